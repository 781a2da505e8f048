"""The token counter behind the context budget and its correction by provider-reported
usage (`app.manager.token_count`), seen through the API."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.domain import Part, ToolCall
from app.domain.tokens import O200K, EncodingCounter
from app.manager.token_count import UsageCalibration, request_tokens
from app.providers.base import ProviderMessage, ProviderRequest, ToolSpec
from app.settings import Settings
from tests.api.helpers import create_conv, send
from tests.api.test_context_api import Recorder, openai_app
from tests.fakes.openai_fake import Reply


async def test_the_budget_total_is_the_counter_of_the_request_sent(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(
        client,
        pack_id="customer-support",
        prompt_name="support",
        variables={"company_name": "Acme"},
    )
    for i in range(4):
        await send(client, conv["id"], f"hello {i} " * (i + 1))
    preview = (
        await client.get(f"/conversations/{conv['id']}/context", params={"content": "and now?"})
    ).json()
    request = ProviderRequest.model_validate(preview["request_body"])  # the mock's body
    assert request.tools, "tool definitions are part of the count"
    assert request_tokens(request, "openai") == preview["budget"]["total"]


def test_tool_calls_results_and_media_are_counted() -> None:
    base = ProviderRequest(model="m", messages=[ProviderMessage(role="user", content="hi")])
    call = ProviderMessage(
        role="assistant",
        tool_calls=[ToolCall(id="c1", name="lookup_order", arguments={"order_id": "A" * 400})],
    )
    result = ProviderMessage(role="tool", content="x" * 400, tool_call_id="c1")
    image = ProviderMessage(
        role="user",
        parts=[
            Part.model_validate(
                {"type": "image", "media": {"media_id": "m1", "width": 1024, "height": 1024}}
            )
        ],
    )
    tools = [ToolSpec(name="lookup_order", description="d" * 400)]
    n = request_tokens(base, "openai")
    assert (
        request_tokens(base.model_copy(update={"messages": [*base.messages, call]}), "openai")
        > n + 100
    )
    assert (
        request_tokens(base.model_copy(update={"messages": [*base.messages, result]}), "openai")
        > n + 100
    )
    assert request_tokens(base.model_copy(update={"tools": tools}), "openai") > n + 100
    with_image = base.model_copy(update={"messages": [*base.messages, image]})
    assert request_tokens(with_image, "openai") == n + 4 + 85 + 170 * 4
    assert request_tokens(with_image, "anthropic") == n + 4 + 1399


def test_calibration_only_tightens_and_is_bounded() -> None:
    cal = UsageCalibration(max_entries=2)
    cal.observe("a", estimated=100, reported=50)
    assert cal.factor("a") == 1.0, "a provider counting less never widens the budget"
    cal.observe("b", estimated=100, reported=10_000)
    assert cal.factor("b") == 4.0
    cal.observe("c", estimated=100, reported=150)
    assert cal.factor("c") == 1.5
    assert cal.factor("a") == 1.0 and len(cal._ratios) == 2
    cal.observe("c", estimated=0, reported=10)  # nothing to learn from
    snap = cal.snapshot()
    assert snap["samples"] == 3 and snap["conversations_corrected"] == 2
    assert snap["mean_error_pct"] < 0 < snap["mean_abs_error_pct"]


async def test_reported_usage_shrinks_the_next_windows_and_stats_report_the_error(
    settings_factory: Callable[..., Settings],
) -> None:
    rec = Recorder()
    rec.fake.default = Reply(text="ok", usage=(3 * 1800, 5))  # the provider counts far more
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(
            client,
            provider="openai",
            context_policy={"max_input_tokens": 2000, "reserve_output_tokens": 200},
        )
        for i in range(30):
            await send(client, conv["id"], f"turn {i} " + "lorem ipsum " * 20)
        preview = (await client.get(f"/conversations/{conv['id']}/context")).json()
        stats = (await client.get("/stats")).json()
    budget = preview["budget"]
    assert budget["correction"] > 2.5 and budget["input_budget"] == int(1800 / budget["correction"])
    last = ProviderRequest.model_validate(
        {
            "model": "x",
            "system": rec.fake.requests[-1]["messages"][0]["content"],
            "messages": rec.fake.requests[-1]["messages"][1:],
        }
    )
    # counted as the builder counts gpt-4o-mini (the openai provider's default): o200k_base
    exact = request_tokens(last, "openai", EncodingCounter(O200K))
    assert exact <= budget["input_budget"] < 1800 / 2.5
    est = stats["context_estimate"]
    assert est["samples"] == 30 and est["mean_error_pct"] < -50
    assert est["conversations_corrected"] == 1
    assert est["by_counter"]["o200k_base"]["samples"] == 30 and "estimate" not in est["by_counter"]


async def test_the_calibration_compares_the_usage_with_the_count_of_the_request_sent(
    settings_factory: Callable[..., Settings],
) -> None:
    """The count calibrated is the builder's (`ContextWindow.counted`, not a recount):
    it must be what the exact counter counts of each request the provider received."""
    rec = Recorder()
    reported = 1000
    rec.fake.default = Reply(text="an answer " * 7, usage=(reported, 5))
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(client, provider="openai")
        for i in range(3):
            await send(client, conv["id"], f"question {i} " + "lorem ipsum " * (5 * i + 1))
        stats = (await client.get("/stats")).json()
    errors = []
    for body in rec.fake.requests:
        sent = ProviderRequest.model_validate(
            {
                "model": "x",
                "system": body["messages"][0]["content"],
                "messages": body["messages"][1:],
            }
        )
        counted = request_tokens(sent, "openai", EncodingCounter(O200K))
        errors.append((counted - reported) / reported)
    est = stats["context_estimate"]["by_counter"]["o200k_base"]
    assert est["samples"] == 3
    assert est["mean_error_pct"] == round(100 * sum(errors) / 3, 2)
