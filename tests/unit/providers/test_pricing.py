from __future__ import annotations

import logging

import pytest

from app.domain import Usage
from app.providers.pricing import DEFAULT_PRICES, PriceTable
from app.settings import ModelPrice

MTOK = Usage.of(1_000_000, 1_000_000)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", 2.50 + 10.00),
        ("gpt-4o-2024-08-06", 2.50 + 10.00),
        ("gpt-4o-mini", 0.15 + 0.60),
        ("gpt-4o-mini-2024-07-18", 0.15 + 0.60),
        ("gpt-4.1-mini-2025-04-14", 0.40 + 1.60),
        ("o3-mini-2025-01-31", 1.10 + 4.40),
        ("claude-3-5-sonnet-20241022", 3.00 + 15.00),
        ("claude-3-5-haiku-latest", 0.80 + 4.00),
        ("claude-sonnet-4-20250514", 3.00 + 15.00),
        ("claude-opus-4-20250514", 15.00 + 75.00),
        ("claude-opus-4-5-20251101", 5.00 + 25.00),
        ("openai/gpt-4o-mini", 0.15 + 0.60),
        ("mock-echo", 0.0),
    ],
)
def test_default_lookups(model: str, expected: float) -> None:
    assert PriceTable().cost_usd(model, MTOK) == pytest.approx(expected)


def test_cost_arithmetic() -> None:
    usage = Usage.of(1200, 300)
    assert PriceTable().cost_usd("gpt-4o", usage) == pytest.approx(
        (1200 * 2.50 + 300 * 10.00) / 1e6
    )


def test_prefix_needs_a_boundary() -> None:
    table = PriceTable()
    assert table.price("gpt-4ox") is None
    assert table.price("o3x-large") is None


def test_overrides_replace_and_extend() -> None:
    table = PriceTable(
        {
            "gpt-4o": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0),
            "llama3": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.1),
        }
    )
    assert table.cost_usd("gpt-4o-2024-11-20", MTOK) == pytest.approx(3.0)
    assert table.cost_usd("gpt-4o-mini", MTOK) == pytest.approx(0.75)  # longer key still wins
    assert table.cost_usd("llama3:8b", MTOK) == pytest.approx(0.2)
    assert DEFAULT_PRICES["gpt-4o"].input_per_mtok == 2.50  # defaults untouched


def test_unknown_model_costs_nothing_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.DEBUG, logger="parley.providers"):
        assert table.cost_usd("mystery-model", MTOK) == 0.0
        assert table.cost_usd("mystery-model", MTOK) == 0.0
    assert sum("mystery-model" in r.getMessage() for r in caplog.records) == 1


def test_unknown_model_names_remembered_for_logging_stay_bounded() -> None:
    from app.providers.pricing import UNKNOWN_LOGGED_MAX

    table = PriceTable()
    for i in range(UNKNOWN_LOGGED_MAX + 500):
        assert table.cost_usd(f"client-chosen-{i}", MTOK) == 0.0
    assert len(table._unknown_logged) == UNKNOWN_LOGGED_MAX
