"""API keys: service keys act for anyone, user keys only for their user, and another
user's conversation is a 404 (no existence leak)."""

from __future__ import annotations

from collections.abc import Callable

from app.settings import ApiKey, Settings
from tests.api.helpers import assert_problem
from tests.conftest import running_app

KEYS = [
    ApiKey(key="svc-key", role="service"),
    ApiKey(key="alice-key", role="user", user_id="alice"),
    ApiKey(key="bob-key", role="user", user_id="bob"),
]


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_keys_and_ownership(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(auth="keys", api_keys=KEYS)) as client:
        body = {"pack_id": "general-assistant", "prompt_name": "chat"}
        r = await client.post("/conversations", json=body)
        assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_problem(await client.get("/packs", headers=h("wrong")), 401, "unauthorized")
        assert (await client.get("/healthz")).status_code == 200

        r = await client.post("/conversations", json=body, headers=h("alice-key"))
        assert r.status_code == 201 and r.json()["user_id"] == "alice"
        alice_conv = r.json()["id"]
        r = await client.post(
            "/conversations", json={**body, "user_id": "bob"}, headers=h("alice-key")
        )
        assert_problem(r, 401, "unauthorized")
        r = await client.post(
            "/conversations", json={**body, "user_id": "carol"}, headers=h("svc-key")
        )
        assert r.status_code == 201

        url = f"/conversations/{alice_conv}"
        assert_problem(await client.get(url, headers=h("bob-key")), 404, "conversation_not_found")
        r = await client.post(f"{url}/messages", json={"content": "hi"}, headers=h("bob-key"))
        assert_problem(r, 404, "conversation_not_found")
        assert (await client.get(url, headers=h("svc-key"))).status_code == 200
        r = await client.post(f"{url}/messages", json={"content": "hi"}, headers=h("alice-key"))
        assert r.status_code == 200

        listed = (await client.get("/conversations", headers=h("bob-key"))).json()["data"]
        assert listed == []
        listed = (
            await client.get("/conversations", params={"user_id": "alice"}, headers=h("bob-key"))
        ).json()["data"]
        assert listed == []
        assert len((await client.get("/conversations", headers=h("svc-key"))).json()["data"]) == 2
        r = await client.delete("/users/alice/conversations", headers=h("bob-key"))
        assert_problem(r, 404, "not_found")  # like every other cross-user call
        assert (await client.get(url, headers=h("alice-key"))).status_code == 200


async def test_a_repeated_authorization_header_is_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    """Outside tester: two Authorization headers were accepted, the first acting while a
    proxy or log keeping the last saw another caller. Whichever of them is valid (both, the
    same key twice, one of them), the request is a 401 and does nothing."""
    async with running_app(settings_factory(auth="keys", api_keys=KEYS)) as client:
        body = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"}
        pairs = [
            ("svc-key", "alice-key"),
            ("alice-key", "svc-key"),
            ("alice-key", "alice-key"),
            ("alice-key", "wrong"),
            ("wrong", "alice-key"),
        ]
        for first, second in pairs:
            twice = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
            for r in (
                await client.post("/conversations", json=body, headers=twice),
                await client.get("/packs", headers=twice),
            ):
                problem = assert_problem(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == "Bearer"
                assert problem["errors"][0]["loc"] == ["header", "Authorization"], problem
        listed = await client.get("/conversations", headers=h("svc-key"))
        assert listed.json()["data"] == []
        assert (await client.get("/packs", headers=h("alice-key"))).status_code == 200
