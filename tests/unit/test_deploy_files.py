"""Static checks of the deployment files (Dockerfile, .dockerignore, docker-compose.yml).

There is no container engine where the suite runs, so the files are parsed and checked for
the properties we rely on: loopback-only publishing, Redis durability, a non-root image with
a health check, PostgreSQL behind a profile, and compose defaults the app accepts. When a
Compose v2 CLI is available, `docker compose config` validates the file as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose()["services"][name]
    return svc


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` with an (empty by default) environment."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_services() -> None:
    doc = compose()
    assert {"app", "redis", "postgres"} <= set(doc["services"])
    used = {
        volume.split(":", 1)[0]
        for svc in doc["services"].values()
        for volume in svc.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used and used <= set(doc["volumes"]), "every named volume is declared"


def test_every_published_port_is_loopback_only() -> None:
    services = compose()["services"]
    assert service("app")["ports"] == ["127.0.0.1:8000:8000"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_app_uses_redis_and_waits_for_it() -> None:
    app = service("app")
    assert app["build"] == "."
    env = app["environment"]
    assert env["PARLEY_STATE_URL"] == "redis://redis:6379/0"
    assert app["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_app_environment_passes_host_settings_through() -> None:
    env = service("app")["environment"]
    for name in ("PARLEY_AUTH", "PARLEY_API_KEYS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        assert re.fullmatch(rf"\$\{{{name}(:-[^}}]*)?\}}", env[name]), (name, env[name])
    assert interpolate(env["PARLEY_AUTH"]) == "none"
    assert interpolate(env["OPENAI_API_KEY"]) == ""
    host = {"PARLEY_AUTH": "keys", "OPENAI_API_KEY": "sk-host"}
    assert interpolate(env["PARLEY_AUTH"], host) == "keys"
    assert interpolate(env["OPENAI_API_KEY"], host) == "sk-host"


@pytest.mark.parametrize("name", ["app", "app-postgres"])
def test_compose_defaults_are_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set on the host, the app's environment parses into the settings we mean:
    no auth (loopback only), no keys, the mock provider, the right store."""
    for key in list(os.environ):
        if key.startswith(("PARLEY_", "OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(key)
    for key, value in service(name)["environment"].items():
        monkeypatch.setenv(key, interpolate(str(value)))
    settings = Settings()
    assert settings.auth == "none" and settings.api_keys == []
    assert settings.resolved_provider() == "mock"
    assert settings.state_url.split("://")[0] in {"redis", "postgresql+asyncpg"}


def test_redis_is_durable_and_healthchecked() -> None:
    redis = service("redis")
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    words = command if isinstance(command, list) else command.split()
    assert "--appendonly" in words and words[words.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


def test_postgres_is_an_opt_in_profile() -> None:
    postgres = service("postgres")
    assert postgres["image"].startswith("postgres:16")
    assert postgres["profiles"] == ["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "profiles" not in service("app") and "profiles" not in service("redis")

    alt = service("app-postgres")
    assert alt["profiles"] == ["postgres"]
    assert alt["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = interpolate(alt["environment"]["PARLEY_STATE_URL"])
    assert url == "postgresql+asyncpg://parley:parley@postgres:5432/parley"
    pg_env = postgres["environment"]
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"]) == ("parley", "parley")
    assert interpolate(pg_env["POSTGRES_PASSWORD"]) == "parley"


def test_docker_compose_config_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("no Compose v2 plugin (`docker compose`)")
    for extra in ([], ["--profile", "postgres"]):
        result = subprocess.run(
            [docker, "compose", "-f", str(COMPOSE), *extra, "config", "--quiet"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    stages = [a for k, a in steps if k == "FROM"]
    assert len(stages) >= 2
    for stage in stages:
        image = stage.split()[0]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        assert resolved == "python:3.11-slim", stage


def test_dockerfile_installs_from_the_lock_with_uv() -> None:
    runs = [a for k, a in instructions() if k == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    env = " ".join(a for k, a in instructions() if k == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in env
    copies = [a for k, a in instructions() if k == "COPY"]
    assert any("uv.lock" in c for c in copies)
    assert any(c.startswith("app/") for c in copies)
    assert any(c.startswith("packs/") for c in copies)


def test_dockerfile_runtime_settings() -> None:
    steps = instructions()
    runtime = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "PARLEY_HOST=0.0.0.0" in env
    assert [a for k, a in runtime if k == "EXPOSE"] == ["8000"]
    users = [a for k, a in runtime if k == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    cmd = json.loads(next(a for k, a in runtime if k == "CMD"))
    assert cmd in (["parley", "serve"], ["uvicorn", "app.main:create_app", "--factory"])


def test_dockerfile_healthcheck_uses_python_against_healthz() -> None:
    checks = [a for k, a in instructions() if k == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "curl" not in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # the probe is valid Python


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    expected = {".git", ".venv", ".tools", "data", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    assert expected <= patterns
    for kept in ("app", "packs", "uv.lock", "pyproject.toml", "README.md"):
        assert kept not in patterns
