"""Token estimation without a tokenizer: ~4 characters per token, as providers document
for English text. Used by the context builder and the mock provider's usage numbers."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0
