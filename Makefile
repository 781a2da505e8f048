# The only entry points. A fresh machine needs nothing but python3 and pip:
# uv is bootstrapped into .tools/, the app environment lives in .venv/.
PY ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON := $(shell command -v $(PY))
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Real services the suite talks to (override to point elsewhere).
export PARLEY_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export PARLEY_TEST_REDIS_URL ?= redis://127.0.0.1:6379/13

PYTEST_ARGS ?=

.PHONY: run test lint openapi bench install install-dev clean

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --inexact

install-dev: $(UV)
	$(UV) sync --frozen --inexact --extra dev

run: install
	mkdir -p data
	$(VENV)/bin/uvicorn app.main:create_app --factory --host $${PARLEY_HOST:-127.0.0.1} --port $${PARLEY_PORT:-8000}

test: install-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app

openapi: install-dev
	$(VENV)/bin/python -m app.openapi_export openapi/openapi.json

bench: $(UV)
	$(UV) sync --frozen --inexact --extra dev --extra bench
	$(VENV)/bin/python bench/turns.py
	$(VENV)/bin/python bench/streaming.py

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
