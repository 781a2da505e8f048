"""Checkpoints: named pointers to a message of a conversation (O(1) to create)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from app.domain.model import DomainModel

CheckpointKind = TypeAliasType("CheckpointKind", Literal["manual", "snapshot", "auto"])


class Checkpoint(DomainModel):
    id: str
    conversation_id: str
    name: str | None = None
    description: str | None = None
    kind: CheckpointKind = "manual"
    message_id: str | None
    message_count: int
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
