"""The pieces an opened `RedisStore` calls (`redis_store`, `redis_records`)."""

from __future__ import annotations

from dataclasses import dataclass

from app.stores.redis_checkpoints import CheckpointOps
from app.stores.redis_conn import RedisClient
from app.stores.redis_context_items import ContextItemCalls
from app.stores.redis_conversations import ConversationOps
from app.stores.redis_index import Indexes
from app.stores.redis_lineage import LineageOps
from app.stores.redis_media import MediaOps
from app.stores.redis_messages import MessageOps
from app.stores.redis_packs import PackOps
from app.stores.redis_refs import Directory
from app.stores.redis_scripts import Scripts
from app.stores.redis_summaries import SummaryOps


@dataclass(frozen=True)
class RedisParts:
    """What `RedisStore.open()` builds."""

    client: RedisClient
    scripts: Scripts
    indexes: Indexes
    lineages: LineageOps
    directory: Directory
    media: MediaOps
    summaries: SummaryOps
    context_items: ContextItemCalls
    conversations: ConversationOps
    messages: MessageOps
    checkpoints: CheckpointOps
    packs: PackOps
