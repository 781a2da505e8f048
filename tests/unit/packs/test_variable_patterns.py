"""Variable `validation.pattern`s are RE2 (Go regexp syntax, as PromptKit reads them):
matching takes time linear in the value whatever the pattern (outside tester T15: Python's
backtracking `re` hung the event loop on `(a+)+$`), and a pattern RE2 cannot compile is
refused when the pack is loaded."""

from __future__ import annotations

import time

import pytest

from app.packs.models import Variable
from app.packs.variables import value_problems
from tests.unit.packs.helpers import minimal_pack
from tests.unit.packs.test_parse import locs, var


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(([a-z])+.)+[A-Z]([a-z])+$"])
def test_catastrophic_patterns_match_in_linear_time(pattern: str) -> None:
    variable = Variable.model_validate(var("v", validation={"pattern": pattern}))
    hostile = "a" * 10_000 + "!"
    t = time.perf_counter()
    problems = value_problems(variable, hostile)
    assert time.perf_counter() - t < 0.5  # Python's re: 40 a's take minutes
    assert problems == [f"must match pattern {pattern!r}"]


def test_patterns_are_unanchored_and_unicode_aware() -> None:
    variable = Variable.model_validate(var("v", validation={"pattern": "^[A-Z]{2}-\\d+$"}))
    assert value_problems(variable, "AB-12") == []
    assert value_problems(variable, "AB-12x") != []
    word = Variable.model_validate(var("w", validation={"pattern": "é+"}))
    assert value_problems(word, "café") == []


@pytest.mark.parametrize("pattern", ["(a)\\1", "a(?=b)", "(?<!x)y"])
def test_patterns_re2_cannot_run_are_refused_at_load(pattern: str) -> None:
    document = minimal_pack(variables=[var("v", validation={"pattern": pattern})])
    assert locs(document) == [["prompts", "chat", "variables", 0, "validation", "pattern"]]
