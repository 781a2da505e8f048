"""The in-memory pack registry: every loaded version of every pack, side by side.

Not a module global: the app's lifespan creates one and keeps it in its state. Mutations are
synchronous and happen on the event loop thread only (`load_dir` does its file I/O and
validation in a worker thread, then inserts on the loop), so no lock is needed.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.domain.model import DomainModel
from app.errors import InvalidPack, PackExists, PackNotFound
from app.json_text import loads_strict
from app.packs.models import PromptPack
from app.packs.semver import SemVer
from app.packs.validation import pack_warnings, parse_pack

log = logging.getLogger("parley.packs")

PACK_FILE_GLOB = "*.pack.json"


class PackSummary(DomainModel):
    """One pack id in `GET /packs`: its latest version, plus every loaded version."""

    id: str
    name: str
    version: str
    description: str | None = None
    prompts: list[str]
    tools: list[str]
    versions: list[str]  # newest first


@dataclass(frozen=True)
class PackLoadProblem:
    """A pack file that was skipped: which file, and every problem (`{"loc", "msg"}`)."""

    path: str
    errors: list[dict[str, Any]]


@dataclass(frozen=True)
class _Entry:
    pack: PromptPack
    semver: SemVer
    canonical: str  # canonical JSON of the validated document, for content equality


class PackRegistry:
    """Loaded packs by id and version. Latest = highest SemVer precedence (pre-releases
    included, as precedence defines); build metadata only breaks ties."""

    def __init__(self) -> None:
        self._packs: dict[str, dict[str, _Entry]] = {}

    def add(self, document: Any) -> tuple[PromptPack, bool]:
        """Validate and register `document`; `(pack, created)`.

        The same id+version with identical content is a no-op returning the loaded pack
        (`created=False`); with different content it is `PackExists`. Invalid: `InvalidPack`.
        """
        return self._insert(parse_pack(document), source="request")

    def get(self, pack_id: str, version: str | None = None) -> PromptPack:
        """The latest version of `pack_id`, or exactly `version` (`v` prefix tolerated)."""
        versions = self._packs.get(pack_id)
        if not versions:
            raise PackNotFound(f"PromptPack {pack_id!r} is not loaded.")
        if version is None:
            return self._ordered(versions)[0].pack
        # (a conversation's stored version is the key itself: no parse on every turn)
        entry = versions.get(version)
        if entry is not None:
            return entry.pack
        try:
            key = str(SemVer.parse(version))
        except ValueError:
            key = version
        entry = versions.get(key)
        if entry is None:
            loaded = ", ".join(e.pack.version for e in self._ordered(versions))
            raise PackNotFound(
                f"PromptPack {pack_id!r} has no version {version!r} (loaded: {loaded})."
            )
        return entry.pack

    def __len__(self) -> int:
        return len(self._packs)

    def summary(self, pack_id: str, version: str | None = None) -> PackSummary:
        """The summary of one version (the latest by default), listing every version."""
        pack = self.get(pack_id, version)
        latest = self._summary(self._packs[pack_id])
        return latest.model_copy(
            update={
                "name": pack.name,
                "version": pack.version,
                "description": pack.description,
                "prompts": list(pack.prompts),
                "tools": list(pack.tools),
            }
        )

    def __contains__(self, pack_id: object) -> bool:
        return pack_id in self._packs

    async def load_dir(self, directory: Path) -> list[PackLoadProblem]:
        """Load every `*.pack.json` in `directory` (sorted by name), skipping bad files.

        Reading, JSON decoding and validation run in a worker thread. Each bad file
        (unreadable, invalid JSON, invalid pack, conflicting duplicate) is logged as a
        warning naming the file and its problems, and returned. A missing directory is
        logged and yields `[]`.
        """
        scanned = await asyncio.to_thread(_scan_directory, directory)
        if scanned is None:
            log.warning("packs directory %s does not exist; no packs loaded from it", directory)
            return []
        problems: list[PackLoadProblem] = []
        loaded = 0
        for path, result in scanned:
            if isinstance(result, PackLoadProblem):
                problems.append(result)
                continue
            try:
                self._insert(result, source=path)
            except PackExists as exc:
                problems.append(
                    PackLoadProblem(path=path, errors=[{"loc": ["version"], "msg": exc.detail}])
                )
                continue
            loaded += 1
        for problem in problems:
            log.warning(
                "skipping pack file %s: %s",
                problem.path,
                "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in problem.errors),
            )
        log.info(
            "loaded %d pack file(s) from %s (%d pack id(s) in total, %d file(s) skipped)",
            loaded,
            directory,
            len(self),
            len(problems),
        )
        return problems

    # Defined after every method annotated with the `list` builtin, which it shadows here.
    def list(self) -> builtins.list[PackSummary]:
        """One summary per pack id (its latest version), sorted by id."""
        return [self._summary(self._packs[pack_id]) for pack_id in sorted(self._packs)]

    # --- internals -----------------------------------------------------------------------

    def _insert(self, pack: PromptPack, *, source: str) -> tuple[PromptPack, bool]:
        semver = SemVer.parse(pack.version)
        canonical = json.dumps(
            pack.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        versions = self._packs.setdefault(pack.id, {})
        key = str(semver)
        existing = versions.get(key)
        if existing is not None:
            if existing.canonical == canonical:
                return existing.pack, False
            raise PackExists(
                f"PromptPack {pack.id!r} version {pack.version} is already loaded with "
                "different content; publish it under a new version."
            )
        versions[key] = _Entry(pack=pack, semver=semver, canonical=canonical)
        for warning in pack_warnings(pack):
            log.warning(
                "pack %s %s (%s): %s: %s",
                pack.id,
                pack.version,
                source,
                _loc(warning["loc"]),
                warning["msg"],
            )
        return pack, True

    @staticmethod
    def _ordered(versions: dict[str, _Entry]) -> builtins.list[_Entry]:
        return sorted(versions.values(), key=lambda e: e.semver.sort_key, reverse=True)

    def _summary(self, versions: dict[str, _Entry]) -> PackSummary:
        ordered = self._ordered(versions)
        latest = ordered[0].pack
        return PackSummary(
            id=latest.id,
            name=latest.name,
            version=latest.version,
            description=latest.description,
            prompts=list(latest.prompts),
            tools=list(latest.tools),
            versions=[e.pack.version for e in ordered],
        )


def _scan_directory(directory: Path) -> list[tuple[str, PromptPack | PackLoadProblem]] | None:
    """Blocking: read and validate every pack file. `None` if `directory` is missing."""
    if not directory.is_dir():
        return None
    try:
        paths = sorted(directory.glob(PACK_FILE_GLOB))
    except OSError as exc:
        problem = PackLoadProblem(str(directory), [{"loc": [], "msg": f"cannot list: {exc}"}])
        return [(str(directory), problem)]
    return [(str(path), _load_file(path)) for path in paths]


def _load_file(path: Path) -> PromptPack | PackLoadProblem:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return PackLoadProblem(str(path), [{"loc": [], "msg": f"cannot read file: {exc}"}])
    try:
        document = loads_strict(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity/1e999
        return PackLoadProblem(str(path), [{"loc": [], "msg": f"invalid JSON: {exc}"}])
    try:
        return parse_pack(document)
    except InvalidPack as exc:
        return PackLoadProblem(str(path), exc.errors or [{"loc": [], "msg": exc.detail}])


def _loc(loc: list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(document)"
