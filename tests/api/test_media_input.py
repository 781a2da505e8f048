"""Bad and hostile input at the media endpoints: body types, file names, sizes, truncated
bodies and Range edge cases. Every answer is a documented problem, nothing half-stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import media_samples as samples
from tests.api.helpers import assert_problem
from tests.api.media_helpers import MediaApp, auth, media_app

BOUNDARY = "Bq7"


def form(
    filename: bytes | None,
    data: bytes,
    *,
    field: bytes = b"file",
    end: bool = True,
    ctype: bytes | None = b"image/png",
) -> bytes:
    disposition = b'form-data; name="' + field + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    body = (
        b"--"
        + BOUNDARY.encode()
        + b"\r\nContent-Disposition: "
        + disposition
        + (b"\r\nContent-Type: " + ctype if ctype else b"")
        + b"\r\n\r\n"
        + data
    )
    return body + (b"\r\n--" + BOUNDARY.encode() + b"--\r\n" if end else b"")


def multipart_headers(who: str = "alice") -> dict[str, str]:
    return {**auth(who), "content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def assert_nothing_stored(app: MediaApp) -> None:
    assert app.blob_files() == []
    staging = app.settings.media_dir / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/problem+json",
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=x",
        "multipart/form-data",  # no boundary
        None,
    ],
)
async def test_upload_bodies_that_are_not_media_are_415(
    tmp_path: Path, content_type: str | None
) -> None:
    async with media_app(tmp_path) as app:
        headers = auth("alice") | ({"content-type": content_type} if content_type else {})
        body = b'{"file": "aGk="}' if content_type and "json" in content_type else samples.png()
        r = await app.client.post("/media", content=body, headers=headers)
        problem = assert_problem(r, 415, "unsupported_media_type")
        assert "multipart/form-data" in problem["detail"]
        assert "multipart/form-data" in r.headers["accept-post"]
        assert_nothing_stored(app)
        assert await app.manager.store.user_media_ids("alice") == []


async def test_raw_uploads_with_a_media_type_still_work(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        for ctype in ("application/octet-stream", "image/png", "image/jpeg"):  # sniffed anyway
            png = samples.png(5, 5)
            r = await app.client.post(
                "/media", content=png, headers=auth("alice") | {"content-type": ctype}
            )
            assert r.status_code == 201, r.text
            assert r.json()["mime_type"] == "image/png"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"../../etc/passwd", "passwd"),
        (b"C:\\Users\\x\\evil.png", "evil.png"),
        (b"a\x00b.png", "ab.png"),
        (b"a\x1b[31mred.png", "a[31mred.png"),
        (b"\xe2\x80\xaegnp.exe", "gnp.exe"),  # RIGHT-TO-LEFT OVERRIDE dropped
        (b"\xff\xfe.png", ".png"),  # undecodable bytes dropped
        ("été.png".encode(), "été.png"),
        (b"x" * 1000 + b".png", "x" * 255),
        (b"   ", None),
        (b"", None),
    ],
)
async def test_hostile_file_names_are_labels_only(
    tmp_path: Path, raw: bytes, stored: str | None
) -> None:
    async with media_app(tmp_path, media_threshold_kb=0) as app:
        png = samples.png(6, 6)
        r = await app.client.post("/media", content=form(raw, png), headers=multipart_headers())
        assert r.status_code == 201, r.text
        record = await app.manager.store.get_media(r.json()["media_id"])
        assert record is not None and record.filename == stored
        # the blob's location is its digest, whatever the name said
        assert [p.name for p in app.blob_files()] == [record.sha256]
        got = await app.client.get(f"/media/{record.id}", headers=auth("alice"))
        assert got.headers["content-disposition"] == f'inline; filename="{record.id}.png"'
        # the same rule for files sent with a message
        conv = await app.conversation("alice")
        body = form(raw, samples.png(7, 7), field=b"image")
        r = await app.client.post(
            f"/conversations/{conv['id']}/messages", content=body, headers=multipart_headers()
        )
        assert r.status_code == 200, r.text
        assert r.json()["messages"][0]["parts"][0]["media"]["filename"] == stored


async def test_truncated_multipart_stores_nothing(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        png = samples.png_of_size(300_000)
        for cut in (10, 200, len(png) - 1):
            body = form(b"a.png", png, end=False)[: 100 + cut]
            r = await app.client.post("/media", content=body, headers=multipart_headers())
            assert_problem(r, 422, "validation_error")
        conv = await app.conversation("alice")
        body = form(b"a.png", png, field=b"image", end=False)
        r = await app.client.post(
            f"/conversations/{conv['id']}/messages", content=body, headers=multipart_headers()
        )
        assert_problem(r, 422, "validation_error")
        assert_nothing_stored(app)
        got = (await app.client.get(f"/conversations/{conv['id']}", headers=auth("alice"))).json()
        assert got["message_count"] == 0


async def test_too_large_uploads_are_refused_before_or_while_reading(tmp_path: Path) -> None:
    async with media_app(tmp_path, media_max_mb=1) as app:
        # declared far beyond any limit: refused from the header, nothing read
        r = await app.client.post(
            "/media",
            content=samples.png(),
            headers=auth("alice") | {"content-type": "image/png", "content-length": str(10**15)},
        )
        assert_problem(r, 413, "media_too_large")
        # streamed past PARLEY_MEDIA_MAX_MB, raw and as multipart
        big = samples.png_of_size(1_200_000)
        r = await app.client.post(
            "/media", content=big, headers=auth("alice") | {"content-type": "image/png"}
        )
        assert_problem(r, 413, "media_too_large")
        r = await app.client.post(
            "/media", content=form(b"b.png", big), headers=multipart_headers()
        )
        assert_problem(r, 413, "media_too_large")
        assert_nothing_stored(app)


async def test_an_upload_needs_exactly_one_file_and_real_media(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        r = await app.client.post(
            "/media",
            content=form(None, b"just text", field=b"note", ctype=None),
            headers=multipart_headers(),
        )
        assert_problem(r, 422, "validation_error")
        r = await app.client.post(
            "/media", content=b"", headers=auth("alice") | {"content-type": "image/png"}
        )
        assert_problem(r, 422, "unsupported_media")
        assert_nothing_stored(app)


@pytest.mark.parametrize(
    ("header", "status", "served"),
    [
        ("bytes=0-99", 206, (0, 99)),
        ("bytes=-0", 416, None),
        ("bytes=-10", 206, (-10, None)),
        ("bytes=-99999999", 206, (0, None)),  # a suffix longer than the file: all of it
        ("bytes=0-99999999", 206, (0, None)),  # an end past the end is clamped
        ("bytes=SIZE-", 416, None),  # starts at the end
        ("bytes=SIZE0-SIZE9", 416, None),  # wholly beyond the end
        ("bytes=99999999999999999999999999-", 416, None),
        # more digits than Python's int() takes (4,300): 500s before (outside tester T5)
        ("bytes=" + "9" * 5000 + "-", 416, None),
        ("bytes=-" + "9" * 5000, 206, (0, None)),
        ("bytes=0-" + "9" * 5000, 206, (0, None)),
        ("bytes=" + "0" * 5000 + "1-2", 206, (1, 2)),  # leading zeros are the number
        ("bytes=0-5,3-10", 200, None),  # several (overlapping) ranges: the whole body
        ("bytes=0-5, 10-20", 200, None),
        ("bytes=10-5", 200, None),  # invalid: ignored
        ("bytes=abc", 200, None),
        ("bytes=-", 200, None),
        ("items=0-5", 200, None),  # another unit: ignored
        ("bytes = 2 - 4", 206, (2, 4)),
    ],
)
async def test_range_edge_cases(
    tmp_path: Path, header: str, status: int, served: tuple[int, int | None] | None
) -> None:
    async with media_app(tmp_path) as app:
        png = samples.png(20, 20)
        size = len(png)
        up = await app.client.post(
            "/media", content=png, headers=auth("alice") | {"content-type": "image/png"}
        )
        url = f"/media/{up.json()['media_id']}"
        header = header.replace("SIZE0", f"{size}0").replace("SIZE9", f"{size}9")
        header = header.replace("SIZE", str(size))
        r = await app.client.get(url, headers=auth("alice") | {"Range": header})
        assert r.status_code == status, (header, r.text)
        if status == 416:
            assert_problem(r, 416, "range_not_satisfiable")
            assert r.headers["content-range"] == f"bytes */{size}"
        elif status == 200:
            assert r.content == png and "content-range" not in r.headers
        else:
            assert served is not None
            start, end = served
            start = start % size
            want = png[start : None if end is None else end + 1]
            assert r.content == want
            last = start + len(want) - 1
            assert r.headers["content-range"] == f"bytes {start}-{last}/{size}"
            assert r.headers["content-length"] == str(len(want))
            head = await app.client.head(url, headers=auth("alice") | {"Range": header})
            assert head.status_code == 206 and head.content == b""
            assert head.headers["content-range"] == r.headers["content-range"]


async def test_if_range_with_another_etag_sends_the_whole_body(tmp_path: Path) -> None:
    async with media_app(tmp_path) as app:
        png = samples.png(9, 9)
        up = await app.client.post(
            "/media", content=png, headers=auth("alice") | {"content-type": "image/png"}
        )
        url = f"/media/{up.json()['media_id']}"
        r = await app.client.get(
            url, headers=auth("alice") | {"Range": "bytes=0-9", "If-Range": '"other"'}
        )
        assert r.status_code == 200 and r.content == png
        r = await app.client.get(
            url,
            headers=auth("alice")
            | {
                "Range": "bytes=0-9",
                "If-Range": up.headers.get("etag") or f'"{up.json()["sha256"]}"',
            },
        )
        assert r.status_code == 206 and r.content == png[:10]
