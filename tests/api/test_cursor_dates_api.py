"""Crafted listing cursors whose timestamp cannot be compared with stored times: 400
`invalid_cursor` on every listing and every store backend, never a 500 (outside tester T12:
a date at the ends of the range overflowed in the UTC conversion; a naive one is a
TypeError when compared with aware times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.pagination import encode_cursor
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings

BAD_TIMES = [
    "0001-01-01T00:00:00+14:00",  # before datetime.min once in UTC
    "9999-12-31T23:59:59-14:00",  # after datetime.max once in UTC
    "2031-05-01T12:00:00",  # naive
]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_cursor_times_outside_the_range_are_invalid_cursors(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        await send(client, cid, "hello")
        for when in BAD_TIMES:
            r = await client.get("/conversations", params={"cursor": encode_cursor(when, "a")})
            assert_problem(r, 400, "invalid_cursor")
            item_cursor = encode_cursor(cid, when, "a")
            for listing in ("checkpoints", "context/items"):
                r = await client.get(
                    f"/conversations/{cid}/{listing}", params={"cursor": item_cursor}
                )
                assert_problem(r, 400, "invalid_cursor")
        assert (await client.get("/conversations")).status_code == 200
