"""Where a benchmark's numbers go and what is recorded with them: machine facts and the
commit (provenance), `bench/results/<name>.json`, and the table in `bench/README.md`."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR

README = REPO / "bench" / "README.md"

# Versions recorded with every result.
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "redis",
    "sse-starlette",
    "httpx",
    "httpx-sse",
    "langgraph",
    "langgraph-checkpoint-postgres",
    "psycopg",
)


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the repository, or None."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _versions(packages: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews every number."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD") or None,
        # Tracked files changed since that commit: the numbers are of a working tree.
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "packages": _versions(PACKAGES),
    }


def write_results(name: str, data: Mapping[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def update_readme(name: str, text: str, readme: Path = README) -> bool:
    """Replace the block between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in the
    benchmarks' README with `text` in a code fence, so the README shows the latest table.
    Returns False (and changes nothing) when the markers are missing."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    try:
        doc = readme.read_text()
    except OSError:
        return False
    start, stop = doc.find(begin), doc.find(end)
    if start < 0 or stop < start:
        return False
    block = f"{begin}\n```text\n{text.rstrip()}\n```\n"
    readme.write_text(doc[:start] + block + doc[stop:])
    return True


def run_header(results: Mapping[str, Any]) -> str:
    """One line saying when, where and on what code a result was measured."""
    m = results["machine"]
    commit = (m.get("git_commit") or "unknown")[:7] + (
        " (dirty tree)" if m.get("git_dirty") else ""
    )
    return (
        f"{m['date_utc']}, commit {commit}, {m['cpu_count']} CPUs, "
        f"load average {m['loadavg_start']} -> {m.get('loadavg_end')}, {results['elapsed_s']}s"
    )


def publish(name: str, results: Mapping[str, Any], output: Path) -> None:
    """Write `results` to `output`; when that is the default `bench/results/<name>.json`,
    also put the run's header and table (`results["table"]`) into `bench/README.md`."""
    path = write_results(output.stem, results, output.parent)
    print(f"\nwrote {path} in {results['elapsed_s']}s")
    if output.resolve() == (RESULTS_DIR / f"{name}.json").resolve() and update_readme(
        name, f"{run_header(results)}\n\n{results['table']}"
    ):
        print("updated the table in bench/README.md")
