"""Model prices (USD per million tokens) and the usage -> `cost_usd` conversion.

A model name is matched exactly first, then by the longest table key that is a prefix of it
followed by `-`, `:` or `@` (so the dated snapshot `gpt-4o-2024-08-06` costs what `gpt-4o`
does while `gpt-4o-mini` keeps its own price). A router-style `vendor/model` name falls back
to the part after the last `/`. Unknown models cost 0.0. Prices are list prices at the time
of writing; deployments override or extend them with `PARLEY_PRICING`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from app.domain import Usage
from app.settings import ModelPrice

log = logging.getLogger("parley.providers")

_BOUNDARY = ("-", ":", "@")


def _p(input_per_mtok: float, output_per_mtok: float) -> ModelPrice:
    return ModelPrice(input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok)


DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {
        # OpenAI
        "gpt-4o": _p(2.50, 10.00),
        "gpt-4o-mini": _p(0.15, 0.60),
        "gpt-4.1": _p(2.00, 8.00),
        "gpt-4.1-mini": _p(0.40, 1.60),
        "gpt-4.1-nano": _p(0.10, 0.40),
        "gpt-4-turbo": _p(10.00, 30.00),
        "gpt-3.5-turbo": _p(0.50, 1.50),
        "gpt-5": _p(1.25, 10.00),
        "gpt-5-mini": _p(0.25, 2.00),
        "gpt-5-nano": _p(0.05, 0.40),
        "o1": _p(15.00, 60.00),
        "o1-mini": _p(1.10, 4.40),
        "o3": _p(2.00, 8.00),
        "o3-mini": _p(1.10, 4.40),
        "o4-mini": _p(1.10, 4.40),
        # Anthropic
        "claude-3-haiku": _p(0.25, 1.25),
        "claude-3-opus": _p(15.00, 75.00),
        "claude-3-5-haiku": _p(0.80, 4.00),
        "claude-3-5-sonnet": _p(3.00, 15.00),
        "claude-3-7-sonnet": _p(3.00, 15.00),
        "claude-sonnet-4": _p(3.00, 15.00),
        "claude-opus-4": _p(15.00, 75.00),
        "claude-opus-4-5": _p(5.00, 25.00),
        "claude-haiku-4-5": _p(1.00, 5.00),
        # Built-in mock
        "mock": _p(0.0, 0.0),
        "mock-echo": _p(0.0, 0.0),
    }
)


# Unknown model names logged once each, at most this many (a client names the model of
# its conversation, so the set would otherwise grow with whatever clients send).
UNKNOWN_LOGGED_MAX = 1000


class PriceTable:
    """Default prices overlaid with `overrides` (e.g. `Settings.pricing`)."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = {**DEFAULT_PRICES, **(overrides or {})}
        # Longest key first, so the first prefix hit is the longest one.
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._unknown_logged: set[str] = set()

    def price(self, model: str) -> ModelPrice | None:
        """The price of `model`, or None when no entry matches."""
        found = self._match(model)
        if found is None and "/" in model:
            found = self._match(model.rsplit("/", 1)[1])
        return found

    def _match(self, model: str) -> ModelPrice | None:
        exact = self._prices.get(model)
        if exact is not None:
            return exact
        for key in self._by_length:
            if model.startswith(key) and model[len(key) : len(key) + 1] in _BOUNDARY:
                return self._prices[key]
        return None

    def cost_usd(self, model: str, usage: Usage) -> float:
        """USD cost of `usage` on `model`; 0.0 for an unknown model (logged once)."""
        price = self.price(model)
        if price is None:
            if model not in self._unknown_logged and len(self._unknown_logged) < UNKNOWN_LOGGED_MAX:
                self._unknown_logged.add(model)
                log.debug("no price for model %r; cost counted as 0", model)
            return 0.0
        return (
            usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
        ) / 1_000_000
