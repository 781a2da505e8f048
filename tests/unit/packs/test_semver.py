from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.packs.semver import SemVer, canonical_version

# semver.org §11 example chain, strictly increasing.
PRECEDENCE_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "1.10.0",
    "2.0.0",
    "10.0.0",
]


def test_parse_fields() -> None:
    v = SemVer.parse("v2.10.3-beta.11.x-y+build.007")
    assert (v.major, v.minor, v.patch) == (2, 10, 3)
    assert v.prerelease == ("beta", "11", "x-y")
    assert v.build == ("build", "007")
    assert str(v) == "2.10.3-beta.11.x-y+build.007"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1.0.0", "1.0.0"), ("v1.0.0", "1.0.0"), ("0.0.0-0", "0.0.0-0"), ("v1.2.3+b", "1.2.3+b")],
)
def test_canonical_drops_v_prefix(text: str, canonical: str) -> None:
    assert canonical_version(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.0",
        "1.0.0.0",
        "01.0.0",
        "1.00.0",
        "1.0.0-",
        "1.0.0-01",  # numeric identifiers have no leading zeros
        "1.0.0-a..b",
        "1.0.0+",
        "1.0.0+a..b",
        "V1.0.0",
        "vv1.0.0",
        " 1.0.0",
        "1.0.0\n",  # `$` would accept this in Python; the ECMA meaning does not
        "1.\u0663.0",  # ARABIC-INDIC DIGIT THREE: `\d` in Python, not in ECMA-262
        "1.0.0-é",
    ],
)
def test_rejects_non_semver(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(text)


def test_precedence_follows_semver_org() -> None:
    keys = [SemVer.parse(v).precedence for v in PRECEDENCE_CHAIN]
    assert all(a < b for a, b in itertools.pairwise(keys))
    shuffled = PRECEDENCE_CHAIN[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=lambda v: SemVer.parse(v).sort_key) == PRECEDENCE_CHAIN


def test_build_metadata_ignored_for_precedence_but_kept() -> None:
    a, b = SemVer.parse("1.0.0+a"), SemVer.parse("1.0.0+b")
    assert a.precedence == b.precedence == SemVer.parse("v1.0.0").precedence
    assert a != b
    assert a.sort_key < b.sort_key  # deterministic tie-break


def test_numeric_identifiers_rank_below_alphanumeric() -> None:
    assert SemVer.parse("1.0.0-999").precedence < SemVer.parse("1.0.0-a").precedence
    assert SemVer.parse("1.0.0-2").precedence < SemVer.parse("1.0.0-10").precedence
    assert SemVer.parse("1.0.0-B").precedence < SemVer.parse("1.0.0-a").precedence  # ASCII


@given(
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_release_precedence_is_numeric_tuple_order(
    x: tuple[int, int, int], y: tuple[int, int, int]
) -> None:
    vx = SemVer.parse(".".join(map(str, x)))
    vy = SemVer.parse("v" + ".".join(map(str, y)))
    assert (vx.precedence < vy.precedence) == (x < y)
    assert (vx.precedence == vy.precedence) == (x == y)


@given(st.lists(st.from_regex(r"[0-9A-Za-z-]{1,4}", fullmatch=True), min_size=1, max_size=4))
def test_prerelease_always_below_its_release(idents: list[str]) -> None:
    idents = [i.lstrip("0") or "0" if i.isdigit() else i for i in idents]
    pre = SemVer.parse("3.1.4-" + ".".join(idents))
    assert pre.precedence < SemVer.parse("3.1.4").precedence
    assert pre.precedence > SemVer.parse("3.1.3").precedence
    assert str(SemVer.parse(str(pre))) == str(pre)


def test_a_non_semver_version_is_explained_not_shown_as_a_regex() -> None:
    from app.errors import InvalidPack
    from app.packs import parse_pack

    doc = {
        "id": "x",
        "name": "x",
        "version": "1.0",
        "template_engine": {"version": "v1", "syntax": "{{variable}}"},
        "prompts": {"a": {"id": "a", "name": "a", "version": "1.0.0", "system_template": "hi"}},
    }
    try:
        parse_pack(doc)
    except InvalidPack as exc:
        assert exc.errors == [
            {"loc": ["version"], "msg": "version must be SemVer (MAJOR.MINOR.PATCH), got '1.0'"}
        ]
    else:
        raise AssertionError("1.0 was accepted")
