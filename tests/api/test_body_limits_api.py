"""The body limits README's Limits table gives, at the default settings: 5 MiB
(`4 x PARLEY_MAX_MESSAGE_BYTES + 1 MiB`) for an ordinary route, that plus one base64 part of
`PARLEY_MEDIA_MAX_MB` + 4 KiB (33,209,002 bytes) for the routes that may carry media
(outside tester T6: the table gave only the first). A declared Content-Length over the
limit is refused before the body is read."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_problem

ORDINARY = 4 * 2**20 + 2**20
WITH_MEDIA = ORDINARY + (20 * 2**20) * 4 // 3 + 4096


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/conversations", ORDINARY),
        ("/conversations/c/checkpoints", ORDINARY),
        ("/conversations/c/messages", WITH_MEDIA),
        ("/conversations/c/messages/m/edit", WITH_MEDIA),
    ],
)
async def test_a_declared_body_over_the_documented_limit_is_refused(
    client: httpx.AsyncClient, path: str, limit: int
) -> None:
    assert WITH_MEDIA == 33_209_002
    headers = {"content-type": "application/json", "content-length": str(limit + 1)}
    r = await client.post(path, content=b"{}", headers=headers)
    body = assert_problem(r, 413, "message_too_large")
    assert str(limit) in body["detail"]
