"""Conversations over HTTP: create, read, list, patch, delete."""

from __future__ import annotations

import asyncio

import httpx

from tests.api.helpers import assert_problem, create_conv, send


async def test_create_generates_ulid_and_renders_system_prompt(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, metadata={"tier": "gold"})
    assert len(conv["id"]) == 26
    assert conv["user_id"] == "alice"
    assert conv["provider"] == "mock" and conv["model"] == "mock-echo"
    assert conv["system_prompt"] and "{{" not in conv["system_prompt"]
    assert conv["message_count"] == 0 and conv["head_message_id"] is None
    assert conv["version"] == 1 and conv["status"] == "idle"
    assert conv["metadata"] == {"tier": "gold"}
    assert conv["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
    }


async def test_create_with_supplied_id_and_conflict(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, conversation_id="user:alice:conv:42")
    assert conv["id"] == "user:alice:conv:42"
    r = await client.post(
        "/conversations",
        json={
            "pack_id": "general-assistant",
            "prompt_name": "chat",
            "user_id": "alice",
            "conversation_id": "user:alice:conv:42",
        },
    )
    assert_problem(r, 409, "conversation_exists")


async def test_create_validation_errors(client: httpx.AsyncClient) -> None:
    base = {"prompt_name": "chat", "user_id": "u"}
    r = await client.post("/conversations", json={**base, "pack_id": "nope"})
    assert_problem(r, 404, "pack_not_found")
    r = await client.post(
        "/conversations", json={**base, "pack_id": "general-assistant", "prompt_name": "missing"}
    )
    assert_problem(r, 422, "prompt_not_found")
    r = await client.post(
        "/conversations",
        json={
            "pack_id": "customer-support",
            "prompt_name": "support",
            "user_id": "u",
            "variables": {"tone": "rude", "bogus": 1},
        },
    )
    body = assert_problem(r, 422, "invalid_variables")
    named = {e["loc"][-1] for e in body["errors"]}
    assert {"company_name", "tone", "bogus"} <= named, body
    r = await client.post(
        "/conversations", json={"pack_id": "general-assistant", "prompt_name": "chat"}
    )
    assert_problem(r, 422, "validation_error")
    r = await client.post(
        "/conversations",
        json={**base, "pack_id": "general-assistant", "conversation_id": "bad id with spaces"},
    )
    assert_problem(r, 422, "validation_error")
    r = await client.post(
        "/conversations", json={**base, "pack_id": "general-assistant", "provider": "nope"}
    )
    assert_problem(r, 422, "validation_error")


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/conversations", content=b'{"pack_id": ', headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")


async def test_variables_render_and_patch_rerenders(client: httpx.AsyncClient) -> None:
    conv = await create_conv(
        client,
        pack_id="customer-support",
        prompt_name="support",
        variables={"company_name": "Acme"},
    )
    assert "Acme" in conv["system_prompt"]
    r = await client.patch(
        f"/conversations/{conv['id']}", json={"variables": {"company_name": "Globex"}}
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert "Globex" in patched["system_prompt"] and "Acme" not in patched["system_prompt"]
    assert patched["version"] == conv["version"] + 1
    r = await client.patch(
        f"/conversations/{conv['id']}", json={"variables": {"company_name": None}}
    )
    assert_problem(r, 422, "invalid_variables")
    again = (await client.get(f"/conversations/{conv['id']}")).json()
    assert again["version"] == patched["version"], "a rejected patch must not write"


async def test_patch_metadata_merge_and_if_match(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, metadata={"a": 1, "b": 2})
    url = f"/conversations/{conv['id']}"
    r = await client.patch(url, json={"metadata": {"b": None, "c": "x"}})
    assert r.json()["metadata"] == {"a": 1, "c": "x"}
    etag = r.headers["etag"]
    assert etag.startswith('"2.') and (await client.get(url)).headers["etag"] == etag
    r = await client.patch(url, json={"metadata": {"d": 1}}, headers={"If-Match": '"1"'})
    assert_problem(r, 412, "precondition_failed")
    r = await client.patch(url, json={"metadata": {"d": 1}}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.json()["version"] == 3
    r = await client.patch(url, json={"metadata": {"d": 2}}, headers={"If-Match": etag})
    assert_problem(r, 412, "precondition_failed")
    r = await client.patch(url, json={"metadata": {"d": 2}}, headers={"If-Match": '"3"'})
    assert r.status_code == 200 and r.json()["version"] == 4  # the bare version holds too
    # a version of any length is compared, not a 500 (outside tester T4: 5,000 digits)
    huge = '"' + "9" * 5000 + '"'
    r = await client.patch(url, json={"metadata": {"e": 1}}, headers={"If-Match": huge})
    assert_problem(r, 412, "precondition_failed")


async def test_if_match_takes_a_star_or_a_list_of_strong_entity_tags(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9110 §13.1.1: `*` matches any current version, a list matches if any member
    does, a weak tag never matches (it was stripped and matched) and tags compare as
    strings; a well-formed tag that is no version is a 412, only a field outside the
    grammar a 422. `*` and lists were 422."""
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}"
    version = conv["version"]
    for i, field in enumerate(["*", f'"{version + 1}", "{version + 9}"', f'"7", "{version + 2}"']):
        r = await client.patch(url, json={"metadata": {f"k{i}": i}}, headers={"If-Match": field})
        assert r.status_code == 200, (field, r.text)
        version += 1
        assert r.json()["version"] == version
    r = await client.patch(
        url, json={"metadata": {"e": 1}}, headers={"If-Match": f' , "{version}",'}
    )
    assert r.status_code == 200, r.text  # empty list elements are allowed
    version += 1
    for field in [
        f'W/"{version}"',
        f'W/"{version}", "{version + 1}"',
        f'"0{version}"',
        '"abc"',
        '""',
        f'"{version},{version}"',  # one tag: a comma is an etagc
    ]:
        r = await client.patch(url, json={"metadata": {"x": 1}}, headers={"If-Match": field})
        assert_problem(r, 412, "precondition_failed")
    for field in [
        str(version),
        f'"{version}',
        f'*, "{version}"',
        f'"{version}" "{version}"',
        "W/",
        ",",
        "",
    ]:
        r = await client.patch(url, json={"metadata": {"x": 1}}, headers={"If-Match": field})
        problem = assert_problem(r, 422, "validation_error")
        assert problem["errors"][0]["loc"] == ["header", "If-Match"], (field, problem)
    final = (await client.get(url)).json()
    assert final["version"] == version and "x" not in final["metadata"]
    # several field lines are one list (RFC 9110 §5.3): FastAPI's parameter was the first
    lines = [("If-Match", '"999"'), ("If-Match", f'"{version}"')]
    r = await client.patch(url, json={"metadata": {"y": 1}}, headers=lines)
    assert r.status_code == 200 and r.json()["version"] == version + 1, r.text
    lines = [("If-Match", f'"{version + 1}"'), ("If-Match", "*")]  # `*` is not a list member
    r = await client.patch(url, json={"metadata": {"y": 2}}, headers=lines)
    assert_problem(r, 422, "validation_error")


async def test_concurrent_patches_are_all_applied(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}"
    rs = await asyncio.gather(
        *(client.patch(url, json={"metadata": {f"k{i}": i}}) for i in range(10))
    )
    assert all(r.status_code == 200 for r in rs)
    final = (await client.get(url)).json()
    assert final["metadata"] == {f"k{i}": i for i in range(10)}
    assert final["version"] == 11


async def test_list_filters_and_pagination(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await create_conv(
            client,
            conversation_id=f"user:bob:{i}",
            user_id="bob",
            metadata={"topic": "billing" if i % 2 else "tech", "n": i},
        )
    await create_conv(client, conversation_id="user:carol:1", user_id="carol")
    await create_conv(
        client,
        pack_id="customer-support",
        prompt_name="support",
        user_id="bob",
        conversation_id="other:1",
        variables={"company_name": "Acme"},
    )

    async def ids(**params: object) -> list[str]:
        r = await client.get("/conversations", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["data"]]

    assert set(await ids(user_id="bob")) == {f"user:bob:{i}" for i in range(5)} | {"other:1"}
    assert set(await ids(prefix="user:bob:")) == {f"user:bob:{i}" for i in range(5)}
    assert await ids(pack_id="customer-support") == ["other:1"]
    assert set(await ids(**{"metadata.topic": "billing"})) == {"user:bob:1", "user:bob:3"}
    assert await ids(**{"metadata.n": "3"}) == ["user:bob:3"]
    assert await ids(user_id="nobody") == []

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"prefix": "user:", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/conversations", params=params)).json()  # type: ignore[arg-type]
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    r = await client.get("/conversations", params={"cursor": "garbage!!"})
    assert_problem(r, 400, "invalid_cursor")


async def test_newest_activity_lists_first(client: httpx.AsyncClient) -> None:
    a = await create_conv(client, user_id="dana")
    b = await create_conv(client, user_id="dana")
    await send(client, a["id"], "bump")
    r = await client.get("/conversations", params={"user_id": "dana"})
    assert [c["id"] for c in r.json()["data"]] == [a["id"], b["id"]]


async def test_delete_and_user_erasure(client: httpx.AsyncClient) -> None:
    a = await create_conv(client, user_id="erin")
    await send(client, a["id"], "hello")
    await create_conv(client, user_id="erin")
    keep = await create_conv(client, user_id="frank")
    r = await client.delete(f"/conversations/{a['id']}")
    assert r.status_code == 204
    assert_problem(await client.get(f"/conversations/{a['id']}"), 404, "conversation_not_found")
    assert_problem(await client.delete(f"/conversations/{a['id']}"), 404, "conversation_not_found")
    r = await client.delete("/users/erin/conversations")
    assert r.json() == {"deleted": 1}
    assert (await client.get("/conversations", params={"user_id": "erin"})).json()["data"] == []
    assert (await client.get(f"/conversations/{keep['id']}")).status_code == 200


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404, "not_found")


async def test_patch_ttl_null_is_refused_and_changes_nothing(client: httpx.AsyncClient) -> None:
    """A TTL cannot be removed: `"ttl_seconds": null` was accepted and ignored (200); it is
    now 422 at body.ttl_seconds and the conversation keeps its TTL and expiry."""
    conv = await create_conv(client, ttl_seconds=3600)
    r = await client.patch(f"/conversations/{conv['id']}", json={"ttl_seconds": None})
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "ttl_seconds"]
    after = (await client.get(f"/conversations/{conv['id']}")).json()
    assert after["ttl_seconds"] == 3600 and after["expires_at"] == conv["expires_at"]
    assert after["version"] == conv["version"]
    r = await client.patch(f"/conversations/{conv['id']}", json={"ttl_seconds": 60})
    assert r.status_code == 200 and r.json()["ttl_seconds"] == 60
