"""A conversation on an OpenAI model is budgeted by the exact count of its encoding, the
same in the dry run and in the real request (`app.manager.context`)."""

from __future__ import annotations

import json
from collections.abc import Callable

from app.domain.tokens import O200K, EncodingCounter, estimate_tokens
from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.test_context_api import Recorder, openai_app, wire

# English words: ~6 characters per o200k token, so the ~4-characters estimate counts ~50 %
# more than the exact count.
CONTENT = "The weather is lovely today and everyone is outside." * 40


async def test_a_budget_that_fits_by_the_exact_count_but_not_by_the_estimate(
    settings_factory: Callable[..., Settings],
) -> None:
    rec = Recorder()
    o200k = EncodingCounter(O200K)
    exact_pending = 4 + o200k.total([CONTENT])
    estimated_pending = 4 + estimate_tokens(CONTENT)
    assert estimated_pending > exact_pending * 1.3
    async with openai_app(settings_factory, rec) as client:
        probe = await create_conv(client, provider="openai", model="gpt-4o")
        fixed = (await client.get(f"/conversations/{probe['id']}/context")).json()["budget"]
        exact_fixed = fixed["system"] + fixed["tools"]
        # room for the exact count and 20 tokens more; the estimate needs ~200 more
        policy = {
            "strategy": "fail",
            "max_input_tokens": exact_fixed + exact_pending + 20 + 100,
            "reserve_output_tokens": 100,
        }
        conversations = {}
        for model in ("gpt-4o", "local-model"):  # the second has no known tokenizer
            conv = await create_conv(client, provider="openai", model=model, context_policy=policy)
            conversations[model] = conv["id"]
        exact_id, estimated_id = conversations["gpt-4o"], conversations["local-model"]

        r = await client.get(f"/conversations/{exact_id}/context", params={"content": CONTENT})
        assert r.status_code == 200, r.text
        preview = r.json()
        assert preview["budget"]["pending"] == exact_pending
        assert preview["budget"]["total"] <= preview["budget"]["input_budget"]
        await send(client, exact_id, CONTENT)
        assert rec.raw[-1].content == wire(preview["request_body"])
        assert json.loads(rec.raw[-1].content)["model"] == "gpt-4o"

        calls = len(rec.raw)
        r = await client.get(f"/conversations/{estimated_id}/context", params={"content": CONTENT})
        assert_problem(r, 422, "context_overflow")
        r = await client.post(f"/conversations/{estimated_id}/messages", json={"content": CONTENT})
        assert_problem(r, 422, "context_overflow")
        assert len(rec.raw) == calls, "the refused turn called no provider"
        assert estimated_pending > exact_pending


async def test_history_is_counted_exactly_and_stats_report_the_error_per_counter(
    settings_factory: Callable[..., Settings],
) -> None:
    rec = Recorder()
    o200k = EncodingCounter(O200K)
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(client, provider="openai", model="gpt-4o-mini")
        for i in range(3):
            await send(client, conv["id"], f"question {i}: {CONTENT[: 200 + i]}")
        preview = (await client.get(f"/conversations/{conv['id']}/context")).json()
        history = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
        stats = (await client.get("/stats")).json()
    expected = sum(4 + o200k.total([m["content"]]) for m in history)
    assert preview["budget"]["history"] == expected
    assert expected != sum(4 + estimate_tokens(m["content"]) for m in history)
    by_counter = stats["context_estimate"]["by_counter"]
    assert by_counter[O200K]["samples"] == 3
