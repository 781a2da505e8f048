"""Media: server memory and store size for a media-heavy conversation, with large media
externalized to the media store vs kept inline in the messages, and upload throughput of
`POST /media` vs a plain disk write (DESIGN §11, issue 12). Prints a table, writes
bench/results/media.json.

    .venv/bin/python bench/media.py            # full run (~3 minutes)
    .venv/bin/python bench/media.py --quick    # ~30 seconds

Method (details in bench/README.md):

* One real uvicorn per mode, mock provider, SQLite store and `PARLEY_MEDIA_DIR` in a fresh
  temporary directory. Modes: `inline` (`PARLEY_MEDIA_THRESHOLD_KB` above the image size:
  the base64 stays in the message records), `externalized` (threshold 100 KB: the bytes
  go to the media store, the message keeps a reference) with the encoded-media cache off
  (`PARLEY_MEDIA_CACHE_MB=0`) and with its default (16 MB).
* One conversation gets `--images` turns, each a user message of one short text part and
  one image part: a valid PNG of `--image-kb` KB of random pixels (stored deflate blocks,
  incompressible), unique per turn, sent as base64 in JSON. The mock provider's reply
  names the sha256 of the image it received; a turn whose reply does not is a failure.
  With the default 8,000-token window about 27 such images fit, so every turn's provider
  request carries the last ~27 images.
* Server RSS (VmRSS of the uvicorn process) after readiness and one text turn, after the
  image turns, and after reading the whole history back (`GET .../messages`, 100 per page,
  to the end); the peak (VmHWM). Store size: every file of the SQLite database (main,
  -wal, -shm) and every file under the media directory, after the image turns.
* Upload: `--uploads` PNGs of `--upload-mb` MB, unique, each sent once as multipart to
  `POST /media` (one at a time; MB/s over the wall time of all), against writing the same
  bytes to a new file in the same filesystem with `write` + `fsync` + `close` (MB/s, same
  run, after the uploads).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS_DIR
from bench.media_report import MODES, UPLOAD_MODE, render, summarize
from bench.report import loadavg, machine_info, publish
from bench.servers import Server, parley_env, uvicorn_server
from bench.stats import summarize_ms

MB = 1024 * 1024
CREATE_BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "media-bench"}
PAGE = 100


@dataclass(frozen=True)
class Params:
    images: int
    image_kb: int
    uploads: int
    upload_mb: int
    seed: int
    output: Path
    quick: bool = False


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise_png(size_bytes: int, rng: random.Random) -> bytes:
    """A decodable grayscale PNG of random pixels, within a row of `size_bytes` long:
    deflate with stored blocks (level 0), so no layer can compress it."""
    side = max(1, int((size_bytes - 100) ** 0.5))
    rows = b"".join(b"\x00" + rng.randbytes(side) for _ in range(side))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows, 0))
        + _chunk(b"IEND", b"")
    )


def tree_size(path: Path) -> int:
    """Bytes in every regular file under `path` (0 if it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sqlite_size(db: Path) -> int:
    """The database's files: main, -wal and -shm."""
    return sum(tree_size(db.with_name(db.name + suffix)) for suffix in ("", "-wal", "-shm"))


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM (peak resident set) of `pid` from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def mb(n: int | float | None) -> float | None:
    return None if n is None else round(n / MB, 1)


def image_turn(png: bytes, i: int) -> dict[str, Any]:
    return {
        "parts": [
            {"type": "text", "text": f"picture {i}: what is in it?"},
            {
                "type": "image",
                "media": {"base64": base64.b64encode(png).decode(), "mime_type": "image/png"},
            },
        ]
    }


async def read_history(client: httpx.AsyncClient, conv_id: str) -> int:
    """Every message of the conversation, page by page; how many there were."""
    count, before = 0, None
    while True:
        params: dict[str, Any] = {"limit": PAGE, **({"before": before} if before else {})}
        r = await client.get(f"/conversations/{conv_id}/messages", params=params)
        r.raise_for_status()
        body = r.json()
        count += len(body["data"])
        before = body.get("next_cursor")
        if not before:
            return count


async def run_mode(
    p: Params, name: str, threshold_kb: str, cache_mb: str, images: list[bytes], workdir: Path
) -> dict[str, Any]:
    db = workdir / "parley.db"
    env = parley_env(
        f"sqlite+aiosqlite:///{db}",
        workdir,
        PARLEY_MEDIA_THRESHOLD_KB=threshold_kb,
        PARLEY_MEDIA_CACHE_MB=cache_mb,
    )
    out: dict[str, Any] = {"threshold_kb": int(threshold_kb), "cache_mb": int(cache_mb)}
    async with (
        uvicorn_server("app.main:create_app", env, workdir / "server.log") as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=120) as client,
    ):
        r = await client.post("/conversations", json=CREATE_BODY)
        r.raise_for_status()
        conv = r.json()["id"]
        (
            await client.post(f"/conversations/{conv}/messages", json={"content": "hi"})
        ).raise_for_status()
        out["rss_start_mb"] = mb(server.rss_bytes())
        latencies: list[float] = []
        errors: list[str] = []
        failures = 0
        started = time.perf_counter()
        for i, png in enumerate(images):
            body = image_turn(png, i)
            t0 = time.perf_counter()
            r = await client.post(f"/conversations/{conv}/messages", json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            sha = hashlib.sha256(png).hexdigest()
            if r.status_code != 200 or f"sha256={sha}" not in r.json()["reply"]["content"]:
                failures += 1
                errors = [*errors, f"{r.status_code} {r.text[:200]}"][:3]
        out["turns_s"] = round(time.perf_counter() - started, 2)
        out["turn_latency"] = summarize_ms(latencies)
        out["turns_failed"], out["errors_sample"] = failures, errors
        out["rss_after_turns_mb"] = mb(server.rss_bytes())
        out["db_mb"] = mb(sqlite_size(db))
        out["media_dir_mb"] = mb(tree_size(workdir / "media"))
        out["blob_files"] = sum(1 for f in (workdir / "media" / "blobs").rglob("*") if f.is_file())
        t0 = time.perf_counter()
        out["history_messages"] = await read_history(client, conv)
        out["history_read_s"] = round(time.perf_counter() - t0, 2)
        out["rss_after_read_mb"] = mb(server.rss_bytes())
        out["rss_peak_mb"] = mb(peak_rss_bytes(server.pid))
        if name == UPLOAD_MODE:
            out["upload"] = await measure_uploads(p, client, server, workdir)
    out["store_mb"] = round(out["db_mb"] + out["media_dir_mb"], 1)
    out["rss_growth_mb"] = round(out["rss_after_turns_mb"] - out["rss_start_mb"], 1)
    return out


def _write_fsync(path: Path, data: bytes) -> None:
    with path.open("xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


async def measure_uploads(
    p: Params, client: httpx.AsyncClient, server: Server, workdir: Path
) -> dict[str, Any]:
    rng = random.Random(p.seed + 1)
    files = [noise_png(p.upload_mb * MB, rng) for _ in range(p.uploads)]
    total = sum(len(f) for f in files)
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        r = await client.post(
            "/media",
            params={"user_id": CREATE_BODY["user_id"]},
            files={"file": (f"u{i}.png", data, "image/png")},
        )
        if r.status_code != 201:
            raise RuntimeError(f"upload failed: {r.status_code} {r.text[:300]}")
    upload_s = time.perf_counter() - t0
    plain = workdir / "plain"
    plain.mkdir()
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        await asyncio.to_thread(_write_fsync, plain / f"{i}.png", data)
    disk_s = time.perf_counter() - t0
    return {
        "files": p.uploads,
        "bytes": total,
        "post_media_mb_s": round(total / MB / upload_s, 1),
        "disk_write_fsync_mb_s": round(total / MB / disk_s, 1),
        "ratio_disk_over_post": round(disk_s and upload_s / disk_s, 2),
    }


def parse_args(argv: Sequence[str] | None = None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 images, 3 uploads (~30 seconds)")
    ap.add_argument("--images", type=int, help="image turns per mode (default 200)")
    ap.add_argument("--image-kb", type=int, default=300, help="image size (default 300)")
    ap.add_argument("--uploads", type=int, help="uploads (default 20)")
    ap.add_argument("--upload-mb", type=int, default=4, help="upload size (default 4)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "media.json")
    a = ap.parse_args(argv)
    if a.image_kb <= 100 or a.upload_mb < 1 or a.upload_mb > 20:
        ap.error("--image-kb must be over the 100 KB threshold, --upload-mb 1..20")
    return Params(
        images=a.images or (20 if a.quick else 200),
        image_kb=a.image_kb,
        uploads=a.uploads or (3 if a.quick else 20),
        upload_mb=a.upload_mb,
        seed=a.seed,
        output=a.output,
        quick=a.quick,
    )


async def run(p: Params) -> dict[str, Any]:
    started = time.perf_counter()
    rng = random.Random(p.seed)
    images = [noise_png(p.image_kb * 1024, rng) for _ in range(p.images)]
    results: dict[str, Any] = {
        "benchmark": "media",
        "machine": machine_info(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(p).items()},
        "image_bytes": len(images[0]) if images else 0,
        "modes": {},
    }
    for name, threshold, cache_mb in MODES:
        threshold = threshold or str(p.image_kb * 2)
        print(f"{name}: {p.images} image turns ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="parley-bench-media-") as tmp:
            mode = await run_mode(p, name, threshold, cache_mb, images, Path(tmp))
        if "upload" in mode:
            results["upload"] = mode.pop("upload")
        results["modes"][name] = mode
    results["summary"] = summarize(results["modes"])
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_end"] = loadavg()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    results = asyncio.run(run(p))
    table = render(results)
    results["table"] = table
    print()
    print(table)
    publish("media", results, p.output)
    failed = sum(m["turns_failed"] for m in results["modes"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
