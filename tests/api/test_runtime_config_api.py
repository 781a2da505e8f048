"""PARLEY_RUNTIME_CONFIG through the app's real lifespan: providers picked by id, the
fixture file, and a bad file stopping start-up with every problem named."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from app.tools import RuntimeConfigError
from tests.api.helpers import create_conv, send
from tests.conftest import REPO, SHARED, running_app
from tests.e2e.server import free_port
from tests.fakes.openai_fake import FakeOpenAI, Reply

FIXTURE_RC = SHARED / "fixtures" / "runtime-config" / "sdk__examples__runtime-config__runtime.yaml"

GATEWAY = """
apiVersion: promptkit.altairalabs.ai/v1alpha1
kind: RuntimeConfig
metadata: {name: test}
spec:
  providers:
    - id: gateway
      type: openai
      model: gw-model
      base_url: https://gateway.test/v1
      headers: {X-Gateway: parley}
      credential: {api_key: sk-gw}
      defaults: {temperature: 0.9, top_p: 0.5, max_tokens: 77}
      unsupported_params: [max_tokens]
      pricing: {input_cost_per_1k: 0.001, output_cost_per_1k: 0.002}
      stream_idle_timeout: 45s
      stream_retry: {enabled: true, max_attempts: 3, initial_delay: 10ms, max_delay: 20ms}
    - id: local-mock
      type: mock
      model: mock-configured
"""

BAD = """
apiVersion: promptkit.altairalabs.ai/v1alpha1
kind: RuntimeConfig
spec:
  tools:
    get_weather: {http: {url: "ftp://example.com/x"}}
    broken: {mock_template: "{{range .items}}x{{end}}"}
  providers:
    - {type: gemini, model: g}
  hooks:
    audit: {command: python3}
"""


async def test_runtime_config_providers_are_picked_by_id(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(GATEWAY)
    fake = FakeOpenAI(replies=[Reply(text="via gateway", usage=(1000, 500)), Reply(text="again")])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handler(request)

    transport = httpx.MockTransport(handler)
    settings = settings_factory(runtime_config=path)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        running_app(settings, provider_client=http) as client,
    ):
        default = await create_conv(client)  # the first RuntimeConfig provider is the default
        assert (default["provider"], default["model"]) == ("gateway", "gw-model")
        turn = await send(client, default["id"], "hello")
        mocked = await create_conv(client, provider="local-mock")
        assert (mocked["provider"], mocked["model"]) == ("local-mock", "mock-configured")
        echoed = await send(client, mocked["id"], "hi there")
        health = (await client.get("/readyz")).json()
    assert turn["reply"]["content"] == "via gateway"
    assert echoed["reply"]["content"] == "echo: hi there"
    [request] = seen
    assert str(request.url) == "https://gateway.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-gw"
    assert request.headers["x-gateway"] == "parley"
    body = fake.requests[0]
    # the pack's temperature wins over the provider default, the default fills top_p, and
    # max_tokens (the pack's 2048) is dropped as unsupported
    assert body["model"] == "gw-model" and "max_tokens" not in body
    assert body["temperature"] == 0.7 and body["top_p"] == 0.5
    assert turn["cost_usd"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1_000_000)
    assert "gateway" in json.dumps(health)


async def test_the_fixture_runtime_config_loads_and_names_unapplied_sections(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parley")
    async with running_app(settings_factory(runtime_config=FIXTURE_RC)) as client:
        assert (await client.get("/healthz")).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(warnings) == 1 and "evals, hooks, logging" in warnings[0]


async def test_a_bad_runtime_config_stops_start_up_naming_every_problem(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(BAD)
    with pytest.raises(RuntimeConfigError) as info:
        async with running_app(settings_factory(runtime_config=path)):
            pytest.fail("the app started")
    text = str(info.value)
    assert "4 problems" in text
    assert "spec.tools.get_weather.http.url: must be an http:// or https:// URL" in text
    assert "spec.tools.broken.mock_template: {{range .items}} is not supported" in text
    assert "spec.providers.0.type: must be one of openai, claude, ollama, vllm, mock" in text
    assert "spec.hooks.audit.hook: required field is missing" in text  # unapplied, still checked


def test_uvicorn_exits_at_start_up_on_a_bad_runtime_config(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(BAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "OPENAI_"))}
    env.update(
        {
            "PARLEY_RUNTIME_CONFIG": str(path),
            "PARLEY_STATE_URL": "memory://",
            "PARLEY_PACKS_DIR": str(REPO / "packs"),
        }
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "invalid RuntimeConfig" in proc.stderr and "4 problems" in proc.stderr
    assert "spec.providers.0.type" in proc.stderr
