"""Small helpers for API tests."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


async def create_conv(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"}
    payload.update(body)
    r = await client.post("/conversations", json=payload)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def send(client: httpx.AsyncClient, conv_id: str, text: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/conversations/{conv_id}/messages", json={"content": text, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body
