"""Context items: reference documents and notes a conversation carries beside its history
(DESIGN §6, Penguin's `add_context`).

An item belongs to one conversation (not to the lineage, unlike summaries): it is state of
that conversation, deleted with it, exported with it, and copied into a fork at fork time
(a fork's later changes never reach its source, nor the other way round). The context
builder sends the items after the system prompt, inside their own budget share
(`ContextPolicy.max_context_tokens`): pinned items always, then unpinned ones newest first
while they fit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, StrictBool

from app.domain.model import DomainModel


class ContextItem(DomainModel):
    id: str
    conversation_id: str
    content: str = Field(description="The text sent to the model (Markdown is sent as is).")
    media_id: str | None = Field(
        default=None, description="The uploaded text/plain or text/markdown media it was read from."
    )
    source: str | None = Field(
        default=None, description="Where it came from (a file name, a URL): shown to the model."
    )
    pinned: StrictBool = Field(
        default=False,
        description="Always sent (a turn that cannot fit its pinned items is refused); "
        "unpinned items are sent newest first while the items' budget share lasts.",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    tokens: int = Field(
        description="Input tokens of the item as sent, by the estimate (~4 characters per "
        "token); a conversation counted exactly (an OpenAI model) budgets it by its "
        "encoding (`GET .../context` `budget.context_items`)."
    )
    created_at: datetime
