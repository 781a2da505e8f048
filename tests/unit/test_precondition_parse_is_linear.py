"""R1: the entity-tag parser of If-Match / If-None-Match backtracks quadratically on a run
of spaces that ends in a non-tag: 16,000 spaces take ~1 s, 60,000 (one header line,
accepted by uvicorn+httptools) ~18 s of event-loop CPU, during which every other request
of the instance waits (measured: /healthz 17.8 s)."""

import time

import pytest

from app.domain.preconditions import entity_tags, none_match, parse_if_match
from app.errors import InvalidRequest


@pytest.mark.parametrize(
    "parse",
    [
        lambda v: parse_if_match([v]),
        lambda v: none_match([v], "abc"),
        lambda v: entity_tags([v], "If-Match"),
    ],
)
def test_malformed_entity_tag_list_with_long_space_run_is_refused_in_linear_time(parse):
    value = '"1",' + " " * 16_000 + "x"
    start = time.perf_counter()
    with pytest.raises(InvalidRequest):
        parse(value)
    # Linear work is well under 10 ms here; the quadratic parse takes ~1 s.
    assert time.perf_counter() - start < 0.2


def test_a_malformed_range_with_long_space_runs_is_ignored_in_linear_time() -> None:
    from app.api.media import _range

    for value in (
        "bytes=" + " " * 16_000 + "x",
        "bytes= " + " " * 16_000 + "-" + " " * 16_000 + "x",
    ):
        start = time.perf_counter()
        assert _range(value, 100) is None  # not the grammar: the whole body
        assert time.perf_counter() - start < 0.2
    assert _range("bytes = 5 - 9", 100) == (5, 9)  # the spaces the grammar allows still parse
