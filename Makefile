# The only entry points. A fresh machine needs nothing but python3 and pip:
# uv is bootstrapped into .tools/, the app environment lives in .venv/.
PY ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
# The real interpreter behind `python3`: a pyenv shim (or any wrapper) is a different path
# from the one `.venv` records, and uv would rebuild the environment on every call.
REAL_PY := $(shell $(PY) -c 'import os, sys; print(os.path.realpath(sys.executable))')
export UV_PYTHON := $(REAL_PY)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Real services the suite talks to (override to point elsewhere).
export PARLEY_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export PARLEY_TEST_REDIS_URL ?= redis://127.0.0.1:6379/13

PYTEST_ARGS ?=
# The suite runs on two pytest-xdist workers, one test module per worker at a time (module
# fixtures such as a uvicorn server start once): 16 -> ~10 min here. PYTEST_WORKERS=0
# runs it in this process (for -x, --pdb, -s).
PYTEST_WORKERS ?= 2

# Generated-client checks (tests/clients): the Python generator in its own environment
# (its pinned dependencies never touch the app's lock), the npm packages from their lock.
CLIENT_PY := $(TOOLS)/python-client
CLIENT_PY_LOCK := tests/clients/python/requirements.lock
CLIENT_TS := tests/clients/ts

.PHONY: run test lint openapi install install-dev clients clean bench bench-install bench-turns \
	bench-streaming bench-frameworks bench-profile bench-plot bench-quick bench-media

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Stamps: the environment is synced only when the lock or the project changed, so a second
# `make run`/`make test` does nothing to `.venv` (and never disturbs a run in progress).
STAMP := $(VENV)/.parley-synced
STAMP_DEV := $(VENV)/.parley-synced-dev

# --compile-bytecode: the .pyc files are written once here, so every process starts from
# them even where PYTHONDONTWRITEBYTECODE is set (without them each uvicorn or CLI process
# compiles FastAPI, SQLAlchemy, pydantic, mcp... from source: ~10 s of CPU per start).
$(STAMP): pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --inexact --compile-bytecode
	touch $@

$(STAMP_DEV): pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --inexact --extra dev --compile-bytecode
	touch $@ $(STAMP)

install: $(STAMP)

install-dev: $(STAMP_DEV)

run: install
	mkdir -p data
	$(VENV)/bin/uvicorn app.main:create_app --factory --host $${PARLEY_HOST:-127.0.0.1} --port $${PARLEY_PORT:-8000}

test: install-dev clients
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clients: $(CLIENT_PY)/.synced $(CLIENT_TS)/node_modules/.synced

$(CLIENT_PY)/.synced: $(CLIENT_PY_LOCK) | $(UV)
	$(UV) venv --quiet --allow-existing $(CLIENT_PY)
	$(UV) pip sync --quiet --python $(CLIENT_PY)/bin/python $(CLIENT_PY_LOCK)
	touch $@

# Without npm the TypeScript and browser tests skip loudly (fail under CI=true).
$(CLIENT_TS)/node_modules/.synced: $(CLIENT_TS)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(CLIENT_TS) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the TypeScript client and browser checks will not run"; fi

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app

openapi: install-dev
	$(VENV)/bin/python -m app.openapi_export openapi/openapi.json

# Benchmarks (bench/README.md). `make bench` runs everything and rewrites bench/results/
# and the tables of bench/README.md: run it on a quiet machine. BENCH_OUT=dir writes the
# JSON (and figures) elsewhere and leaves the README alone; `make bench-quick` checks every
# benchmark in a few minutes (results in bench/results/quick/, not committed).
BENCH_OUT ?= bench/results
BENCH_ARGS ?=
BENCH_PY := $(VENV)/bin/python
PROFILE_STORES ?= sqlite postgres redis

bench-install: $(STAMP_DEV)
	$(UV) sync --frozen --inexact --extra dev --extra bench

bench: bench-turns bench-streaming bench-frameworks bench-media bench-tree bench-profile bench-plot

bench-turns: bench-install
	$(BENCH_PY) bench/turns.py --output $(BENCH_OUT)/turns.json $(BENCH_ARGS)

bench-streaming: bench-install
	$(BENCH_PY) bench/streaming.py --output $(BENCH_OUT)/streaming.json $(BENCH_ARGS)

bench-frameworks: bench-install
	$(BENCH_PY) bench/frameworks.py --output $(BENCH_OUT)/frameworks.json $(BENCH_ARGS)

bench-media: bench-install
	$(BENCH_PY) bench/media.py --output $(BENCH_OUT)/media.json $(BENCH_ARGS)

bench-tree: bench-install
	$(BENCH_PY) bench/tree_ops.py --json $(BENCH_OUT)/tree_ops.json $(BENCH_ARGS)

bench-profile: bench-install
	mkdir -p $(BENCH_OUT)/profiles
	for s in $(PROFILE_STORES); do \
		$(BENCH_PY) bench/profile_turns.py --store $$s --turns 1500 \
			--py-spy $(BENCH_OUT)/profiles/$$s.raw --json $(BENCH_OUT)/profile-$$s.json || exit 1; \
	done

bench-plot: bench-install
	$(BENCH_PY) bench/plot.py $(wildcard $(BENCH_OUT)/*.json)

bench-quick: bench-install
	$(MAKE) --no-print-directory bench-turns bench-streaming bench-frameworks bench-media \
		BENCH_OUT=bench/results/quick BENCH_ARGS=--quick
	$(BENCH_PY) bench/profile_turns.py --store sqlite --turns 300 --count-turns 50 \
		--py-spy bench/results/quick/sqlite.raw --json bench/results/quick/profile-sqlite.json
	$(BENCH_PY) bench/plot.py bench/results/quick/turns.json bench/results/quick/frameworks.json

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache $(CLIENT_TS)/node_modules $(CLIENT_TS)/generated $(CLIENT_TS)/build
