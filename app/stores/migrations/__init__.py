"""Alembic environment of the SQL store, shipped inside the package.

Run programmatically by `app.stores.sql_engine.upgrade_schema` (no alembic.ini): it hands
the already-open connection to `env.py` through `config.attributes["connection"]`.
"""
