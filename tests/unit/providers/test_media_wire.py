"""Media on the wire: OpenAI Chat Completions and Anthropic Messages bodies, byte for byte
(through MockTransport), and what each provider refuses up front."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from app.domain import MediaRef, Part
from app.providers import anthropic, openai
from app.providers.anthropic import AnthropicProvider
from app.providers.base import ProviderMessage, ProviderRequest, collect
from app.providers.mock import MockProvider
from app.providers.openai import OpenAIProvider
from tests import media_samples as samples

PNG = samples.png(3, 2)
PNG64 = base64.b64encode(PNG).decode()
WAV64 = base64.b64encode(samples.wav(0.05)).decode()
PDF64 = base64.b64encode(samples.pdf()).decode()
TXT64 = base64.b64encode("plain words \u2603".encode()).decode()


def part(kind: str, **media: object) -> Part:
    return Part(type=kind, media=MediaRef.model_validate(media))  # type: ignore[arg-type]


def request(*parts: Part) -> ProviderRequest:
    return ProviderRequest(
        model="m",
        messages=[
            ProviderMessage(
                role="user", content="look", parts=[Part(type="text", text="look"), *parts]
            )
        ],
    )


def test_openai_parts() -> None:
    body = openai.build_body(
        request(
            part("image", base64=PNG64, mime_type="image/png", detail="low", caption="a cat"),
            part("image", url="https://img.test/a.jpg", mime_type="image/jpeg"),
            part("audio", base64=WAV64, mime_type="audio/wav"),
            part("document", base64=PDF64, mime_type="application/pdf", media_id="med_1"),
            part("document", base64=TXT64, mime_type="text/plain"),
        )
    )
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "look"},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG64}", "detail": "low"},
        },
        {"type": "text", "text": "a cat"},
        {"type": "image_url", "image_url": {"url": "https://img.test/a.jpg"}},
        {"type": "input_audio", "input_audio": {"data": WAV64, "format": "wav"}},
        {
            "type": "file",
            "file": {"filename": "med_1.pdf", "file_data": f"data:application/pdf;base64,{PDF64}"},
        },
        {"type": "text", "text": "plain words \u2603"},
    ]


def test_anthropic_parts() -> None:
    body = anthropic.build_body(
        request(
            part("image", base64=PNG64, mime_type="image/png", caption="a cat"),
            part("image", url="https://img.test/a.jpg", mime_type="image/jpeg"),
            part("document", base64=PDF64, mime_type="application/pdf"),
            part("document", url="https://docs.test/a.pdf", mime_type="application/pdf"),
            part("document", base64=TXT64, mime_type="text/plain"),
        )
    )
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG64}},
        {"type": "text", "text": "a cat"},
        {"type": "image", "source": {"type": "url", "url": "https://img.test/a.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF64},
        },
        {"type": "document", "source": {"type": "url", "url": "https://docs.test/a.pdf"}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain words \u2603"},
        },
    ]


@pytest.mark.parametrize(
    ("provider", "kind", "mime", "source", "ok"),
    [
        ("openai", "image", "image/png", "bytes", True),
        ("openai", "image", "image/webp", "url", True),
        ("openai", "image", "image/bmp", "bytes", False),
        ("openai", "image", "image/svg+xml", "bytes", False),
        ("openai", "audio", "audio/mpeg", "bytes", True),
        ("openai", "audio", "audio/ogg", "bytes", False),
        ("openai", "audio", "audio/wav", "url", False),
        ("openai", "document", "application/pdf", "bytes", True),
        ("openai", "document", "application/pdf", "url", False),
        ("openai", "video", "video/mp4", "bytes", False),
        ("anthropic", "image", "image/gif", "url", True),
        ("anthropic", "document", "application/pdf", "url", True),
        ("anthropic", "document", "text/plain", "url", False),
        ("anthropic", "audio", "audio/wav", "bytes", False),
        ("anthropic", "video", "video/mp4", "bytes", False),
    ],
)
def test_what_each_provider_takes(
    provider: str, kind: str, mime: str, source: str, ok: bool
) -> None:
    support = openai.media_support if provider == "openai" else anthropic.media_support
    assert (support(kind, mime, source) is None) is ok


def _sse(lines: list[dict[str, object]], done: bool) -> bytes:
    out = b"".join(b"data: " + json.dumps(x).encode() + b"\n\n" for x in lines)
    return out + (b"data: [DONE]\n\n" if done else b"")


async def test_openai_wire_bytes_through_mock_transport() -> None:
    seen: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.content)
        chunk = {"choices": [{"index": 0, "delta": {"content": "a cat"}, "finish_reason": "stop"}]}
        return httpx.Response(
            200, content=_sse([chunk], True), headers={"content-type": "text/event-stream"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        provider = OpenAIProvider(http, "sk", "https://api.test/v1")
        result = await collect(
            provider.stream(request(part("image", base64=PNG64, mime_type="image/png")))
        )
    assert result.text == "a cat"
    sent = json.loads(seen[0])
    assert (
        sent["messages"][-1]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG64}"
    )
    assert (
        base64.b64decode(sent["messages"][-1]["content"][1]["image_url"]["url"].split(",", 1)[1])
        == PNG
    )


async def test_anthropic_wire_bytes_through_mock_transport() -> None:
    seen: list[bytes] = []
    frames = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 5}}}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    events = b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in frames
    )

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.content)
        return httpx.Response(200, content=events, headers={"content-type": "text/event-stream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        provider = AnthropicProvider(http, "k", "https://api.test")
        await collect(
            provider.stream(request(part("document", base64=PDF64, mime_type="application/pdf")))
        )
    block = json.loads(seen[0])["messages"][-1]["content"][1]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF64},
    }


async def test_the_mock_describes_what_it_received() -> None:
    import hashlib

    result = await collect(
        MockProvider().stream(
            request(
                part("image", base64=PNG64, mime_type="image/png"),
                part("image", url="https://img.test/a.png", mime_type="image/png"),
            )
        )
    )
    digest = hashlib.sha256(PNG).hexdigest()
    assert result.text == (
        f"echo: look [image image/png {len(PNG)} bytes sha256={digest}] [image url=https://img.test/a.png]"
    )
