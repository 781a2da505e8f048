"""Checkpoints: named pointers to a message of a conversation (O(1) to create), and the
policy that makes `auto` ones (`CheckpointPolicy`, applied by
`app.manager.auto_checkpoints`, pruned by `app.domain.checkpoint_retention`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator
from typing_extensions import TypeAliasType

from app.domain.model import DomainModel

CheckpointKind = TypeAliasType("CheckpointKind", Literal["manual", "snapshot", "auto"])

MAX_EVERY_N_TURNS = 100_000
MAX_AUTO_CHECKPOINTS = 10_000
MAX_KEEP_ALL_HOURS = 24 * 3650
MAX_AGE_DAYS = 3650


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
    turn: int | None = Field(
        default=None,
        description="`auto` checkpoints: the turn number (the `turn` of the message it "
        "points at) that made it; null for the other kinds.",
    )


class CheckpointPolicy(DomainModel):
    """When `auto` checkpoints are made and which are kept (Penguin's retention knobs).

    After every committed turn whose turn number is a multiple of `every_n_turns`, an
    `auto` checkpoint is made at the new head; then retention runs over the conversation's
    `auto` checkpoints (manual and snapshot ones are never pruned): all made within the
    last `keep_all_hours` are kept; older ones only when their turn number is a multiple
    of `every_n_turns * keep_every_nth`; any older than `max_age_days` go; of what is left
    at most `max_auto`, the oldest dropped first. The rule counts turn numbers, not
    positions in a list, so pruning never shifts which ones survive.
    """

    model_config = ConfigDict(json_schema_serialization_defaults_required=True, extra="forbid")

    enabled: StrictBool = Field(default=True, description="Make auto checkpoints at all.")
    every_n_turns: StrictInt = Field(
        default=10, ge=1, le=MAX_EVERY_N_TURNS, description="An auto checkpoint every n turns."
    )
    keep_all_hours: StrictFloat = Field(
        default=24.0,
        ge=0,
        le=MAX_KEEP_ALL_HOURS,
        description="Every auto checkpoint younger than this is kept.",
    )
    keep_every_nth: StrictInt = Field(
        default=5,
        ge=1,
        le=MAX_EVERY_N_TURNS,
        description="Beyond keep_all_hours, keep those whose turn number is a multiple of "
        "every_n_turns * keep_every_nth (1 keeps them all).",
    )
    max_age_days: StrictFloat | None = Field(
        default=30.0,
        gt=0,
        le=MAX_AGE_DAYS,
        description="Auto checkpoints older than this are dropped; null: no age limit.",
    )
    max_auto: StrictInt = Field(
        default=50,
        ge=1,
        le=MAX_AUTO_CHECKPOINTS,
        description="At most this many auto checkpoints; the oldest go first.",
    )

    @model_validator(mode="after")
    def _keep_all_within_max_age(self) -> CheckpointPolicy:
        if self.max_age_days is not None and self.keep_all_hours > self.max_age_days * 24:
            raise ValueError("keep_all_hours must not exceed max_age_days * 24")
        return self
