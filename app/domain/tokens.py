"""Token counters: exact for OpenAI's encodings, a calibrated estimate for everything else.

`TokenCounter` counts a list of texts. Two kinds:

* `EstimateCounter` (kind "estimate"): ~4 characters per token, as providers document for
  English text. Used for every provider and model without a tokenizer in a package
  (Anthropic, the mock, Ollama/vLLM models) and by the mock provider's usage numbers.
* `EncodingCounter` (kind = the encoding, "o200k_base" or "cl100k_base"): the exact
  count of OpenAI's tiktoken encodings by `toktok` (toktok-rs), whose vocabularies are
  compiled into its extension module: no data file, no download, ever. Its counts equal
  tiktoken's `encode_ordinary` (tests/unit/test_token_counter.py checks cl100k_base
  against tiktoken with an offline copy of the encoding). Loading an encoding takes
  ~0.1-0.4 s of CPU once per process (`ContextBuilder` does it in a thread); counting
  runs at ~170-230 MB/s on one thread, plus ~40 us per call (so callers batch).

`openai_encoding(model)` is the pure model -> encoding map an OpenAI adapter exposes as
`LLMProvider.token_encoding`; `counter_for(encoding)` makes the counter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import toktok

ESTIMATE_KIND = "estimate"
O200K = "o200k_base"
CL100K = "cl100k_base"
ENCODINGS = (O200K, CL100K)

# Prefixes, most specific first: "gpt-4o" and "gpt-4.1" before "gpt-4".
_OPENAI_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-5", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-3.5", CL100K),
)


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def openai_encoding(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model name, or None (count by the estimate).
    A dated or suffixed name (`gpt-4o-2024-08-06`, `gpt-4.1-mini`) maps like its
    family; `o1`..`o4` match only as the whole name or followed by `-`."""
    name = model.strip().lower()
    for prefix, encoding in _OPENAI_PREFIXES:
        if prefix.startswith("o"):
            if name == prefix or name.startswith(prefix + "-"):
                return encoding
        elif name.startswith(prefix):
            return encoding
    return None


class TokenCounter(ABC):
    """Counts the tokens of texts. `kind` names what it counts by ("estimate" or an
    encoding); two counters of one kind always agree."""

    kind: str

    @property
    def exact(self) -> bool:
        return self.kind != ESTIMATE_KIND

    @abstractmethod
    def count(self, texts: Sequence[str]) -> list[int]:
        """One count per text, in order (0 for an empty text)."""

    def total(self, texts: Sequence[str]) -> int:
        return sum(self.count([t for t in texts if t]))

    def load(self) -> None:
        """Do the one-time work before the first count (CPU only, no I/O); call it in a
        thread from async code. The estimate has none."""
        return None


class EstimateCounter(TokenCounter):
    kind = ESTIMATE_KIND

    def count(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]


class EncodingCounter(TokenCounter):
    """Exact counts for one of `ENCODINGS` (special-token strings count as text, as
    tiktoken's `encode_ordinary` and the OpenAI API count user text)."""

    def __init__(self, encoding: str) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
        self.kind = encoding

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # one thread: the counts are small and the machine's cores serve requests
        return list(toktok.batch_count(list(texts), self.kind, threads=1))

    def load(self) -> None:
        self.count([" "])


ESTIMATE = EstimateCounter()


def counter_for(encoding: str | None) -> TokenCounter:
    return ESTIMATE if encoding is None else EncodingCounter(encoding)
