# syntax=docker/dockerfile:1
#
# Parley service image.
#   docker build -t parley .
#   docker run --rm -p 127.0.0.1:8000:8000 -v parley-data:/app/data parley
# Configuration is the PARLEY_* environment (DESIGN §10); see docker-compose.yml for Redis and
# PostgreSQL. The default store is SQLite under /app/data (mount a volume there to keep it).

ARG PYTHON_IMAGE=python:3.11-slim
# Keep in step with UV_VERSION in the Makefile.
ARG UV_VERSION=0.13.9

# --- build: resolve exactly what uv.lock pins into /app/.venv --------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (their layer is reused until pyproject.toml/uv.lock change) ...
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# ... then the project itself, installed as a regular (non-editable) package so the runtime
# stage needs nothing but the virtual environment.
COPY app/ ./app/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the environment, the example packs, an unprivileged user -----------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin parley
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY packs/ /app/packs/
RUN mkdir -p /app/data/media && chown -R parley:parley /app/data
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARLEY_HOST=0.0.0.0 \
    PARLEY_PORT=8000 \
    PARLEY_PACKS_DIR=/app/packs \
    PARLEY_MEDIA_DIR=/app/data/media \
    PARLEY_STATE_URL=sqlite+aiosqlite:////app/data/parley.db
USER parley:parley
EXPOSE 8000
# No curl in slim images: probe /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PARLEY_PORT', '8000'), timeout=4)"]
CMD ["parley", "serve"]
