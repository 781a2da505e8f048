"""Summaries: a compressed stand-in for the oldest span of a path (context strategy
`summarize`, DESIGN §6).

A summary covers every message from the root of its path down to `covers_message_id`
(inclusive). Messages are immutable and a message has one path to the root, so a summary
is valid for every branch whose path contains that message, in any conversation of the
lineage; the context builder uses the deepest one on the current path. `previous_id` names
the summary it extended (its text plus the messages after it became this one): the chain
of records is how a summary grows incrementally instead of re-reading the history.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.domain.model import DomainModel
from app.domain.usage import Usage


class Summary(DomainModel):
    id: str
    lineage_id: str
    conversation_id: str = Field(description="The conversation whose turn (or compact) made it.")
    covers_message_id: str = Field(
        description="The last message it covers: it stands for that message and every "
        "ancestor of it."
    )
    covers_depth: int = Field(description="`depth` of the covered message.")
    previous_id: str | None = Field(
        default=None, description="The summary this one extended (its text was part of the input)."
    )
    text: str
    tokens: int = Field(description="Input tokens of the summary as sent, by the counter.")
    provider: str
    model: str
    usage: Usage = Field(
        default_factory=Usage,
        description="What the summarization call cost (not part of any turn's usage).",
    )
    created_at: datetime
