"""A `metadata.KEY` filter whose value is a JSON object or array is a 422 naming it: such
values never match on any backend (their text differs between backends; PostgreSQL
matched its own `{"a": 1}` rendering, the others compact JSON). A scalar that merely
starts like one is still a filter."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_problem, create_conv


@pytest.mark.parametrize("value", ['{"a":1}', '{"a": 1}', "[1,2]", "[]", "{}", "[[[[1]]]]"])
async def test_an_object_or_array_filter_value_is_refused(
    client: httpx.AsyncClient, value: str
) -> None:
    await create_conv(client, metadata={"o": {"a": 1}})
    r = await client.get("/conversations", params={"metadata.o": value})
    body = assert_problem(r, 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["query", "metadata.o"]]


async def test_text_that_only_looks_like_json_still_filters(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, metadata={"o": "{draft", "n": 3, "deep": "[" * 5000})
    for params in ({"metadata.o": "{draft"}, {"metadata.n": "3"}, {"metadata.deep": "[" * 5000}):
        r = await client.get("/conversations", params=params)
        assert r.status_code == 200 and [c["id"] for c in r.json()["data"]] == [conv["id"]]
