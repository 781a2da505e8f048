"""Plain data models shared by every layer. No I/O here."""

from app.domain.checkpoint import Checkpoint, CheckpointKind
from app.domain.conversation import (
    CONVERSATION_ID_PATTERN,
    ContextPolicy,
    Conversation,
    ConversationStatus,
    ForkedFrom,
)
from app.domain.ids import new_id, utcnow
from app.domain.messages import FinishReason, MediaRef, Message, Part, Role, ToolCall
from app.domain.pagination import Page
from app.domain.run import Run, RunError, RunStatus
from app.domain.usage import ConversationUsage, Usage

__all__ = [
    "CONVERSATION_ID_PATTERN",
    "Checkpoint",
    "CheckpointKind",
    "ContextPolicy",
    "Conversation",
    "ConversationStatus",
    "ConversationUsage",
    "FinishReason",
    "ForkedFrom",
    "MediaRef",
    "Message",
    "Page",
    "Part",
    "Role",
    "Run",
    "RunError",
    "RunStatus",
    "ToolCall",
    "Usage",
    "new_id",
    "utcnow",
]
