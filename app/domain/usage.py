"""Token accounting."""

from __future__ import annotations

from app.domain.model import DomainModel


class Usage(DomainModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    @classmethod
    def of(cls, input_tokens: int, output_tokens: int) -> Usage:
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )


class ConversationUsage(Usage):
    """Running totals of a conversation's committed messages, cost included."""

    cost_usd: float = 0.0

    def plus(self, usage: Usage, cost_usd: float) -> ConversationUsage:
        total = self + usage
        return ConversationUsage(**total.model_dump(), cost_usd=self.cost_usd + cost_usd)
