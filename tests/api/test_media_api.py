"""Media in messages and at /media (DESIGN §13): the acceptance of issue 12."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from app.domain import ForkedFrom
from tests import media_samples as samples
from tests.api.helpers import assert_problem
from tests.api.media_helpers import MediaApp, auth, image_part, media_app
from tests.fakes.openai_fake import FakeOpenAI

PNG_2MB = samples.png_of_size(2_000_000)
SHA_2MB = hashlib.sha256(PNG_2MB).hexdigest()


def media_of(message: dict, index: int = 1) -> dict:  # type: ignore[type-arg]
    return message["parts"][index]["media"]  # type: ignore[no-any-return]


async def test_a_2mb_png_is_stored_once_for_two_users(tmp_path: Path) -> None:
    """Sent as base64, then by media_id, then by another user: one file, two owners, each
    provider request carries the bytes, each user fetches only through their own id."""
    async with media_app(tmp_path) as app:
        a = await app.conversation("alice")
        r = await app.send_parts(
            "alice", a["id"], [{"type": "text", "text": "look"}, image_part(PNG_2MB, "image/png")]
        )
        assert r.status_code == 200, r.text
        user_msg = r.json()["messages"][0]
        ref = media_of(user_msg)
        alice_id = ref["media_id"]
        assert ref["base64"] is None and ref["sha256"] == SHA_2MB
        assert ref["size_bytes"] == len(PNG_2MB) and ref["mime_type"] == "image/png"
        assert f"{len(PNG_2MB)} bytes sha256={SHA_2MB}" in r.json()["reply"]["content"]

        r = await app.send_parts(
            "alice", a["id"], [{"type": "image", "media": {"media_id": alice_id}}]
        )
        assert r.status_code == 200, r.text
        assert f"sha256={SHA_2MB}" in r.json()["reply"]["content"]

        b = await app.conversation("bob")
        assert_problem(
            await app.send_parts(
                "bob", b["id"], [{"type": "image", "media": {"media_id": alice_id}}]
            ),
            404,
            "media_not_found",
        )
        r = await app.send_parts("bob", b["id"], [image_part(PNG_2MB)])
        assert r.status_code == 200, r.text
        bob_id = media_of(r.json()["messages"][0], 0)["media_id"]
        assert bob_id != alice_id
        assert f"sha256={SHA_2MB}" in r.json()["reply"]["content"]

        assert [p.name for p in app.blob_files()] == [SHA_2MB]  # one file
        alice_rec = await app.manager.store.get_media(alice_id)
        bob_rec = await app.manager.store.get_media(bob_id)
        assert alice_rec is not None and bob_rec is not None
        assert (alice_rec.user_id, bob_rec.user_id) == ("alice", "bob")  # two owners

        got = await app.client.get(f"/media/{alice_id}", headers=auth("alice"))
        assert got.status_code == 200 and got.content == PNG_2MB
        assert_problem(
            await app.client.get(f"/media/{alice_id}", headers=auth("bob")), 404, "media_not_found"
        )
        assert (await app.client.get(f"/media/{bob_id}", headers=auth("bob"))).content == PNG_2MB
        assert_problem(
            await app.client.get(f"/media/{bob_id}", headers=auth("alice")), 404, "media_not_found"
        )


async def test_openai_requests_carry_the_stored_bytes(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    async with (
        fake.client() as http,
        media_app(tmp_path, provider_client=http, openai_api_key="sk-test") as app,
    ):
        for who in ("alice", "bob"):
            conv = await app.conversation(who, provider="openai", model="gpt-4o-mini")
            r = await app.send_parts(
                who, conv["id"], [{"type": "text", "text": "what is it?"}, image_part(PNG_2MB)]
            )
            assert r.status_code == 200, r.text
        assert len(fake.requests) == 2
        expected = "data:image/png;base64," + base64.b64encode(PNG_2MB).decode()
        for body in fake.requests:
            content = body["messages"][-1]["content"]
            assert content[0] == {"type": "text", "text": "what is it?"}
            assert content[1] == {"type": "image_url", "image_url": {"url": expected}}
        assert len(app.blob_files()) == 1


async def test_the_bytes_decide_the_type(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        conv = await app.conversation("alice")
        small_png = samples.png(8, 8)
        r = await app.send_parts("alice", conv["id"], [image_part(small_png, "image/jpeg")])
        assert r.status_code == 200, r.text
        ref = media_of(r.json()["messages"][0], 0)
        assert ref["mime_type"] == "image/png" and (ref["width"], ref["height"]) == (8, 8)
        assert ref["base64"] is not None and ref["media_id"] is None  # small: inline
        assert app.blob_files() == []

        up = await app.client.post(
            "/media", files={"file": ("photo.jpg", PNG_2MB, "image/jpeg")}, headers=auth("alice")
        )
        assert up.status_code == 201, up.text
        assert up.json()["mime_type"] == "image/png" and up.json()["sha256"] == SHA_2MB

        before = (
            await app.client.get(f"/conversations/{conv['id']}", headers=auth("alice"))
        ).json()
        exe = samples.exe()
        body = assert_problem(
            await app.send_parts(
                "alice", conv["id"], [{"type": "text", "text": "x"}, image_part(exe, "image/png")]
            ),
            422,
            "unsupported_media",
        )
        assert body["errors"][0]["loc"] == ["body", "parts", 1, "media"]
        up = await app.client.post(
            "/media", files={"file": ("a.png", exe, "image/png")}, headers=auth("alice")
        )
        assert_problem(up, 422, "unsupported_media")
        after = (await app.client.get(f"/conversations/{conv['id']}", headers=auth("alice"))).json()
        assert after["message_count"] == before["message_count"]
        assert [p.name for p in app.blob_files()] == [SHA_2MB]
        assert hashlib.sha256(exe).hexdigest() not in {p.name for p in app.blob_files()}


MEDIA_OFF_PACK = {
    "id": "no-media",
    "name": "No media",
    "version": "1.0.0",
    "template_engine": {"version": "v1", "syntax": "{{variable}}"},
    "prompts": {
        "chat": {
            "id": "chat",
            "name": "Chat",
            "version": "1.0.0",
            "system_template": "Text only.",
            "media": {"enabled": False},
        },
        "small": {
            "id": "small",
            "name": "Small images",
            "version": "1.0.0",
            "system_template": "Small PNGs.",
            "media": {
                "enabled": True,
                "supported_types": ["image"],
                "image": {"max_size_mb": 1, "allowed_formats": ["png"]},
            },
        },
    },
}


async def test_the_prompt_media_config_is_enforced_and_nothing_is_stored(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        r = await app.client.post("/packs", json=MEDIA_OFF_PACK, headers=auth("service"))
        assert r.status_code == 201, r.text
        off = await app.conversation("alice", pack_id="no-media", prompt_name="chat")
        body = assert_problem(
            await app.send_parts("alice", off["id"], [image_part(PNG_2MB)]),
            422,
            "unsupported_media",
        )
        assert "does not accept media" in body["detail"]
        small = await app.conversation("alice", pack_id="no-media", prompt_name="small")
        body = assert_problem(
            await app.send_parts("alice", small["id"], [image_part(PNG_2MB)]),
            413,
            "media_too_large",
        )
        assert body["errors"][0]["loc"] == ["body", "parts", 0, "media"]
        assert_problem(
            await app.send_parts("alice", small["id"], [image_part(samples.gif())]),
            422,
            "unsupported_media",
        )
        wav = {"type": "audio", "media": {"base64": base64.b64encode(samples.wav(0.1)).decode()}}
        assert_problem(await app.send_parts("alice", small["id"], [wav]), 422, "unsupported_media")
        assert app.blob_files() == []
        assert await app.manager.store.user_media_ids("alice") == []
        for conv in (off, small):
            got = (
                await app.client.get(f"/conversations/{conv['id']}", headers=auth("alice"))
            ).json()
            assert got["message_count"] == 0
        ok = await app.send_parts("alice", small["id"], [image_part(samples.png(4, 4))])
        assert ok.status_code == 200, ok.text


async def test_media_a_provider_cannot_take_is_refused_before_calling_it(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    async with (
        fake.client() as http,
        media_app(tmp_path, provider_client=http, openai_api_key="sk-test") as app,
    ):
        conv = await app.conversation("alice", provider="openai", model="gpt-4o-mini")
        video = {"type": "video", "media": {"base64": base64.b64encode(samples.mp4()).decode()}}
        body = assert_problem(
            await app.send_parts("alice", conv["id"], [video]), 422, "unsupported_media"
        )
        assert "openai" in body["detail"]
        audio_url = {
            "type": "audio",
            "media": {"url": "https://example.test/a.mp3", "mime_type": "audio/mpeg"},
        }
        assert_problem(
            await app.send_parts("alice", conv["id"], [audio_url]), 422, "unsupported_media"
        )
        assert fake.requests == []


async def test_download_headers_ranges_and_ownership(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        up = await app.client.post(
            "/media", files={"file": ("x.png", PNG_2MB, "image/png")}, headers=auth("alice")
        )
        media_id = up.json()["media_id"]
        url = f"/media/{media_id}"
        r = await app.client.get(url, headers={**auth("alice"), "Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == PNG_2MB[:100]
        assert r.headers["content-range"] == f"bytes 0-99/{len(PNG_2MB)}"
        assert r.headers["content-length"] == "100"
        assert r.headers["content-type"] == "image/png"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["etag"] == f'"{SHA_2MB}"'
        assert r.headers["content-disposition"] == f'inline; filename="{media_id}.png"'
        assert_problem(
            await app.client.get(url, headers={**auth("bob"), "Range": "bytes=0-99"}),
            404,
            "media_not_found",
        )
        tail = await app.client.get(url, headers={**auth("alice"), "Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == PNG_2MB[-10:]
        assert_problem(
            await app.client.get(url, headers={**auth("alice"), "Range": f"bytes={len(PNG_2MB)}-"}),
            416,
            "range_not_satisfiable",
        )
        head = await app.client.head(url, headers=auth("alice"))
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(PNG_2MB))
        cached = await app.client.get(
            url, headers={**auth("alice"), "If-None-Match": f'"{SHA_2MB}"'}
        )
        assert cached.status_code == 304
        assert_problem(
            await app.client.get("/media/med_nope", headers=auth("alice")), 404, "media_not_found"
        )
        # the service key acts for any user
        assert (await app.client.get(url, headers=auth("service"))).status_code == 200
        # a service key must say whose upload it is
        assert_problem(
            await app.client.post(
                "/media", content=PNG_2MB, headers={**auth("service"), "content-type": "image/png"}
            ),
            422,
            "validation_error",
        )


async def test_active_content_is_served_as_an_attachment(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"
        up = await app.client.post(
            "/media", files={"file": ("x.svg", svg, "image/svg+xml")}, headers=auth("alice")
        )
        assert up.status_code == 201, up.text
        r = await app.client.get(f"/media/{up.json()['media_id']}", headers=auth("alice"))
        assert r.headers["content-type"] == "image/svg+xml"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_multipart_messages_and_raw_uploads(tmp_path: Path) -> None:
    async with media_app(tmp_path, media_threshold_kb=1) as app:
        conv = await app.conversation("alice")
        wav = samples.wav(0.5)
        r = await app.client.post(
            f"/conversations/{conv['id']}/messages",
            data={"content": "two files", "metadata": json.dumps({"k": "v"})},
            files=[
                ("image", ("p.png", PNG_2MB, "image/png")),
                ("audio", ("v.wav", wav, "audio/wav")),
            ],
            headers=auth("alice"),
        )
        assert r.status_code == 200, r.text
        msg = r.json()["messages"][0]
        assert msg["content"] == "two files" and msg["metadata"] == {"k": "v"}
        assert [p["type"] for p in msg["parts"]] == ["text", "image", "audio"]
        assert msg["parts"][2]["media"]["mime_type"] == "audio/wav"
        reply = r.json()["reply"]["content"]
        assert f"sha256={SHA_2MB}" in reply and f"sha256={hashlib.sha256(wav).hexdigest()}" in reply
        raw = await app.client.post(
            "/media", content=wav, headers={**auth("alice"), "content-type": "audio/wav"}
        )
        assert (
            raw.status_code == 201
            and raw.json()["media_id"] == msg["parts"][2]["media"]["media_id"]
        )
        assert_problem(
            await app.client.post(
                f"/conversations/{conv['id']}/messages",
                content=b"hi",
                headers={**auth("alice"), "content-type": "text/plain"},
            ),
            415,
            "unsupported_media_type",
        )


async def test_threshold_decides_inline_or_stored(tmp_path: Path) -> None:
    async with media_app(tmp_path, media_threshold_kb=0) as app:
        conv = await app.conversation("alice")
        r = await app.send_parts("alice", conv["id"], [image_part(samples.png(2, 2))])
        ref = media_of(r.json()["messages"][0], 0)
        assert ref["media_id"] and ref["base64"] is None
        assert len(app.blob_files()) == 1
        page = (
            await app.client.get(f"/conversations/{conv['id']}/messages", headers=auth("alice"))
        ).json()
        assert media_of(page["data"][0], 0)["media_id"] == ref["media_id"]


async def _fork(app: MediaApp, source: dict, message_id: str) -> str:  # type: ignore[type-arg]
    """A fork through the store (the fork endpoint is issue 10's)."""
    conv = await app.manager.store.get_conversation(source["id"], now=app.manager._now())
    assert conv is not None
    fork = conv.model_copy(
        update={
            "id": f"{conv.id}-fork",
            "head_message_id": message_id,
            "message_count": 1,
            "forked_from": ForkedFrom(conversation_id=conv.id, message_id=message_id),
            "version": 1,
        }
    )
    await app.manager.store.create_conversation(fork)
    return fork.id


async def _two_forks_sharing_an_image(app: MediaApp) -> tuple[str, str, str]:
    a = await app.conversation("alice")
    r = await app.send_parts("alice", a["id"], [image_part(PNG_2MB)])
    user_msg = r.json()["messages"][0]
    fork_id = await _fork(app, a, user_msg["id"])
    r = await app.client.post(
        f"/conversations/{fork_id}/messages", json={"content": "again?"}, headers=auth("alice")
    )
    assert r.status_code == 200, r.text
    return a["id"], fork_id, media_of(user_msg, 0)["media_id"]


async def test_delete_policy_is_fork_aware(tmp_path: Path) -> None:
    async with media_app(tmp_path, media_policy="delete") as app:
        a, fork, media_id = await _two_forks_sharing_an_image(app)
        assert (
            await app.client.delete(f"/conversations/{a}", headers=auth("alice"))
        ).status_code == 204
        assert [p.name for p in app.blob_files()] == [SHA_2MB]  # the fork still shows it
        r = await app.client.post(
            f"/conversations/{fork}/messages",
            json={"content": "still there?"},
            headers=auth("alice"),
        )
        assert r.status_code == 200
        assert (
            await app.client.get(f"/media/{media_id}", headers=auth("alice"))
        ).status_code == 200
        assert (
            await app.client.delete(f"/conversations/{fork}", headers=auth("alice"))
        ).status_code == 204
        assert app.blob_files() == []
        assert_problem(
            await app.client.get(f"/media/{media_id}", headers=auth("alice")),
            404,
            "media_not_found",
        )


async def test_retain_policy_keeps_media(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:  # PARLEY_MEDIA_POLICY defaults to retain
        a, fork, media_id = await _two_forks_sharing_an_image(app)
        for conv in (a, fork):
            assert (
                await app.client.delete(f"/conversations/{conv}", headers=auth("alice"))
            ).status_code == 204
        assert [p.name for p in app.blob_files()] == [SHA_2MB]
        assert (
            await app.client.get(f"/media/{media_id}", headers=auth("alice"))
        ).status_code == 200


async def test_per_conversation_policy_and_user_erasure(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        a = await app.conversation("alice", media_policy="delete")
        r = await app.send_parts("alice", a["id"], [image_part(PNG_2MB)])
        assert r.status_code == 200
        await app.client.delete(f"/conversations/{a['id']}", headers=auth("alice"))
        assert app.blob_files() == []  # the conversation asked for delete
        b = await app.conversation("bob")
        await app.send_parts("bob", b["id"], [image_part(PNG_2MB)])
        up = await app.client.post(
            "/media", files={"file": ("w.wav", samples.wav(0.2), "audio/wav")}, headers=auth("bob")
        )
        assert up.status_code == 201
        assert len(app.blob_files()) == 2
        r = await app.client.delete("/users/bob/conversations", headers=auth("bob"))
        assert r.json() == {"deleted": 1}
        assert app.blob_files() == []
        assert await app.manager.store.user_media_ids("bob") == []


async def test_a_small_context_window_counts_image_tokens(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        conv = await app.conversation(
            "alice", context_policy={"max_input_tokens": 1000, "reserve_output_tokens": 10}
        )
        # by the OpenAI rule the mock uses: 1024 x 2 costs 425 tokens (2 tiles), which fits
        # the 990 input tokens; 2000 x 700 costs 1445 (8 tiles), which does not
        big = {
            "type": "image",
            "media": {"base64": base64.b64encode(samples.png(1024, 2, seed=b"\x01")).decode()},
        }
        ok = await app.send_parts("alice", conv["id"], [big])
        assert ok.status_code == 200, ok.text
        wide = samples.png(2000, 700, seed=b"\x02")
        body = assert_problem(
            await app.send_parts("alice", conv["id"], [image_part(wide)]), 422, "context_overflow"
        )
        assert "tokens" in body["detail"]


async def test_bad_media_parts(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        conv = await app.conversation("alice")
        bad = [
            {"type": "image", "media": {"base64": "not base64!!"}},
            {"type": "image", "media": {}},
            {"type": "image", "media": {"base64": "aGk=", "url": "https://x.test/a.png"}},
            {"type": "image"},
        ]
        for part in bad:
            assert_problem(
                await app.send_parts("alice", conv["id"], [part]), 422, "validation_error"
            )
        assert_problem(
            await app.send_parts(
                "alice", conv["id"], [{"type": "image", "media": {"media_id": "../../etc/passwd"}}]
            ),
            404,
            "media_not_found",
        )
        got = (await app.client.get(f"/conversations/{conv['id']}", headers=auth("alice"))).json()
        assert got["message_count"] == 0


async def test_the_committed_openapi_declares_both_bodies(tmp_path: Path) -> None:
    from app.openapi_export import render

    spec = json.loads(render())
    send = spec["paths"]["/conversations/{conversation_id}/messages"]["post"]
    assert set(send["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "SendMessage" in spec["components"]["schemas"]
    assert {"get", "head"} <= set(spec["paths"]["/media/{media_id}"])
    assert "201" in spec["paths"]["/media"]["post"]["responses"]


async def test_a_media_url_must_be_http_or_https(tmp_path: Path) -> None:
    """The provider fetches a media URL: `file:///etc/passwd` means nothing there, and a
    `data:` URL would carry bytes past the checks base64 gets; both were accepted and
    passed on (outside tester); so were a leading blank, no host, and media on a text part
    (silently dropped). Nothing is stored for a refused send."""
    async with media_app(tmp_path) as app:
        conv = await app.conversation("alice")
        bad = ("file:///etc/passwd", "data:image/png;base64,aGk=", "javascript:alert(1)",
               "ftp://x.test/a.png", "http://[::1", "//x.test/a.png",
               " http://x.test/a.png", "http:///nohost.png", "https://x.test/a b.png",
               "https://x.test/a.png\n", "http://x.test:99999/a.png")  # fmt: skip
        for url in bad:
            part = {"type": "image", "media": {"url": url, "mime_type": "image/png"}}
            body = assert_problem(
                await app.send_parts("alice", conv["id"], [part]), 422, "validation_error"
            )
            assert body["errors"][0]["loc"] == ["body", "parts", 0, "media", "url"], url
        text_with_media = {"type": "text", "text": "hi", "media": {"url": "https://x.test/a.png"}}
        body = assert_problem(
            await app.send_parts("alice", conv["id"], [text_with_media]), 422, "validation_error"
        )
        assert body["errors"][0]["loc"] == ["body", "parts", 0, "media"]
        ok = {"type": "image", "media": {"url": "https://x.test/a.png", "mime_type": "image/png"}}
        assert (await app.send_parts("alice", conv["id"], [ok])).status_code == 200
        r = await app.client.get(f"/conversations/{conv['id']}/messages", headers=auth("alice"))
        assert len(r.json()["data"]) == 2  # only the https turn


async def test_if_none_match_takes_lists_weak_tags_and_star(tmp_path: Path) -> None:
    """RFC 9110 §13.1.2 (weak comparison): a list naming the ETag, the ETag weakened
    (`W/"..."`, as a compressing proxy sends it back) and `*` are a 304; were a full 200.
    Another tag is the full body; a field that is not entity tags a 422."""
    small = samples.png_of_size(2_000)
    async with media_app(tmp_path) as app:
        up = await app.client.post(
            "/media", files={"file": ("x.png", small, "image/png")}, headers=auth("alice")
        )
        url = f"/media/{up.json()['media_id']}"
        etag = f'"{hashlib.sha256(small).hexdigest()}"'
        for field in [etag, f'"other", {etag}', f"W/{etag}", "*"]:
            for method in ("GET", "HEAD"):
                r = await app.client.request(
                    method, url, headers={**auth("alice"), "If-None-Match": field}
                )
                assert r.status_code == 304, (field, method)
                assert r.headers["etag"] == etag and r.content == b""
        lines = [("If-None-Match", '"other"'), ("If-None-Match", etag)]
        r = await app.client.get(url, headers=[*auth("alice").items(), *lines])
        assert r.status_code == 304  # several field lines are one list
        r = await app.client.get(url, headers={**auth("alice"), "If-None-Match": '"other"'})
        assert r.status_code == 200 and r.content == small
        r = await app.client.get(url, headers={**auth("alice"), "If-None-Match": "nope"})
        problem = assert_problem(r, 422, "validation_error")
        assert problem["errors"][0]["loc"] == ["header", "If-None-Match"]


async def test_repeated_range_or_if_range_lines_send_the_whole_body(tmp_path: Path) -> None:
    """Range and If-Range are single values: two lines of either were read as their first
    alone (a 206 of it), while a cache keeping the last would cut another range. The
    whole body (200), as for several ranges."""
    small = samples.png_of_size(2_000)
    async with media_app(tmp_path) as app:
        up = await app.client.post(
            "/media", files={"file": ("x.png", small, "image/png")}, headers=auth("alice")
        )
        url = f"/media/{up.json()['media_id']}"
        etag = f'"{hashlib.sha256(small).hexdigest()}"'
        key = list(auth("alice").items())
        for lines in (
            [("Range", "bytes=0-9"), ("Range", "bytes=20-29")],
            [("Range", "bytes=0-9"), ("If-Range", etag), ("If-Range", etag)],
        ):
            r = await app.client.get(url, headers=[*key, *lines])
            assert r.status_code == 200 and r.content == small, lines
        one = await app.client.get(url, headers=[*key, ("Range", "bytes=0-9"), ("If-Range", etag)])
        assert one.status_code == 206 and one.content == small[:10]
