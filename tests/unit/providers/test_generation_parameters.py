"""Pack `parameters` a provider's API lacks are left out of its requests and reported once;
every parameter a provider declares as supported reaches its wire body."""

from __future__ import annotations

import logging

import pytest

from app.providers import anthropic, openai
from app.providers.base import (
    GENERATION_PARAMETERS,
    LLMProvider,
    ProviderMessage,
    ProviderRequest,
)
from tests.unit.providers.wire import Server, fixture_bytes, run, stream_response

EVERY = {
    "temperature": 0.5,
    "max_tokens": 64,
    "top_p": 0.9,
    "top_k": 40,
    "frequency_penalty": 0.1,
    "presence_penalty": 0.2,
    "stop": ["END"],
    "seed": 7,
}
# the wire name of a parameter where it differs from the pack's
WIRE_NAME = {"anthropic": {"stop": "stop_sequences"}, "openai": {}}


def test_every_generation_parameter_is_in_the_table() -> None:
    assert set(EVERY) == GENERATION_PARAMETERS


def _request() -> ProviderRequest:
    return ProviderRequest(
        model="m", messages=[ProviderMessage(role="user", content="hi")], parameters=EVERY
    )


@pytest.mark.parametrize(
    ("name", "cls", "build_body"),
    [
        ("openai", openai.OpenAIProvider, openai.build_body),
        ("anthropic", anthropic.AnthropicProvider, anthropic.build_body),
    ],
)
def test_supported_parameters_reach_the_body_and_the_rest_do_not(
    name: str, cls: type[LLMProvider], build_body: object
) -> None:
    body = build_body(_request())  # type: ignore[operator]
    for param in GENERATION_PARAMETERS:
        wire = WIRE_NAME[name].get(param, param)
        if param in cls.supported_parameters:
            assert wire in body, (name, param)
        else:
            assert wire not in body, (name, param)
    assert cls.supported_parameters < GENERATION_PARAMETERS  # each lacks something


async def test_ignored_parameters_are_logged_once_per_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server([lambda: stream_response(fixture_bytes("openai_text.txt"))] * 2)
    provider = openai.OpenAIProvider(server.client(), api_key=None, base_url="https://x/v1")
    with caplog.at_level(logging.WARNING, logger="parley.providers"):
        await run(provider, _request())
        await run(provider, _request())
    warnings = [r.getMessage() for r in caplog.records if "top_k" in r.getMessage()]
    assert len(warnings) == 1 and "'openai'" in warnings[0]
    assert provider.ignored_parameters(EVERY) == ["top_k"]
