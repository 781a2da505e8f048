"""`ConversationManager`: the one process-wide coordinator the API talks to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.coordination.base import Coordinator
from app.coordination.liveness import InstanceLiveness
from app.domain import new_id, utcnow
from app.errors import NotReady, StoreUnavailable
from app.manager.admission import AdmissionGate, gate_size
from app.manager.branch_points import BranchPoints
from app.manager.context import ContextBuilder
from app.manager.context_items import ContextItemService
from app.manager.context_preview import ContextPreviewService
from app.manager.context_summary import SummaryWindows
from app.manager.conversations import ConversationService
from app.manager.export import ExportService
from app.manager.forks import ForkService
from app.manager.importer import ImportService
from app.manager.limits import ExecutionLimiter
from app.manager.media import MediaService
from app.manager.message_cache import MessageCache
from app.manager.messages import MessageService
from app.manager.open_streams import CUT_MARGIN_S, OpenStreams
from app.manager.packs import PackLibrary
from app.manager.run_erasure import RunErasure
from app.manager.run_truth import RunTruth
from app.manager.runs import RunService
from app.manager.stats import Stats
from app.manager.summaries import SummaryService
from app.manager.summarizer import Summarizer
from app.manager.telemetry import RunTelemetry
from app.manager.token_count import UsageCalibration
from app.manager.tree import TreeService
from app.manager.turn_requests import TurnRequests
from app.manager.turns import TurnExecutor
from app.manager.warm_up import warm_up
from app.media.base import MediaStore
from app.packs import PackRegistry
from app.providers.base import LLMProvider
from app.providers.pricing import PriceTable
from app.settings import Settings
from app.stores.base import StateStore
from app.tools import EMPTY, ToolRegistry, build_registry

log = logging.getLogger("parley.manager")

ORPHAN_SWEEP_EVERY = 60  # sweep rounds between looks for orphan blobs


class ConversationManager:
    """Owns the services behind the API and the background work (expiry sweep, cancel
    listener). Built and closed by the lifespan; nothing here is global."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        packs: PackRegistry,
        providers: Mapping[str, LLMProvider],
        prices: PriceTable,
        coordinator: Coordinator,
        media: MediaStore,
        telemetry: RunTelemetry | None = None,
        tools: ToolRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.packs = PackLibrary(packs, store)
        self.providers = providers
        self.coordinator = coordinator
        # no RuntimeConfig: every pack tool is a client tool (building one does no I/O)
        self.tools = tools if tools is not None else build_registry(EMPTY, settings)
        self.stats = Stats(telemetry)
        self.cache = MessageCache(max_bytes=settings.message_cache_mb * 2**20)
        self._now = clock
        self.media = MediaService(store=store, media=media, settings=settings, clock=clock)
        self.admission = AdmissionGate(
            gate_size(settings.admission_concurrency, store.connection_limit()),
            settings.admission_timeout_s,
        )
        self._erasure = erasure = RunErasure(coordinator=coordinator, store=store, clock=clock)
        self.conversations = ConversationService(
            erasure=erasure,
            store=store,
            packs=self.packs,
            providers=providers,
            coordinator=coordinator,
            settings=settings,
            clock=clock,
            media=self.media,
            admission=self.admission,
        )
        self.tree = TreeService(
            store=store, conversations=self.conversations, coordinator=coordinator, clock=clock
        )
        self.forks = ForkService(
            store=store,
            conversations=self.conversations,
            tree=self.tree,
            admission=self.admission,
            clock=clock,
        )
        self.messages = MessageService(
            store=store, conversations=self.conversations, cache=self.cache, tree=self.tree
        )
        # this instance's liveness lease: its runs are declared lost once it expires
        self.liveness = InstanceLiveness(coordinator.locks, new_id())
        self.streams = OpenStreams()  # the SSE responses open here (cut at shutdown)
        self.calibration = UsageCalibration()
        self.summarizer = Summarizer(store, providers, clock)
        summary_windows = SummaryWindows(store, self.cache, self.summarizer)
        builder = ContextBuilder(store, self.cache, self.calibration, summary_windows)
        self._builder = builder
        self._warmed = False  # `readiness` says not ready until `warm_up` has run
        self.context = ContextPreviewService(
            store=store,
            conversations=self.conversations,
            packs=self.packs,
            providers=providers,
            context=builder,
            media=self.media,
            clock=clock,
        )
        self.summaries = SummaryService(
            store=store,
            cache=self.cache,
            conversations=self.conversations,
            packs=self.packs,
            context=builder,
            summarizer=self.summarizer,
            clock=clock,
        )
        self.context_items = ContextItemService(
            store=store,
            conversations=self.conversations,
            media=self.media,
            settings=settings,
            clock=clock,
        )
        self.export = ExportService(store=store, conversations=self.conversations, clock=clock)
        self.imports = ImportService(
            store=store,
            conversations=self.conversations,
            packs=self.packs,
            media=self.media,
            settings=settings,
            admission=self.admission,
            clock=clock,
        )
        executor = TurnExecutor(
            erasure=erasure,
            liveness=self.liveness,
            store=store,
            packs=self.packs,
            providers=providers,
            prices=prices,
            context=builder,
            cache=self.cache,
            coordinator=coordinator,
            settings=settings,
            stats=self.stats,
            clock=clock,
            media=self.media,
            tools=self.tools,
        )
        self.runs = RunService(
            conversations=self.conversations,
            executor=executor,
            coordinator=coordinator,
            limiter=ExecutionLimiter(settings.max_concurrent_executions),
            settings=settings,
            stats=self.stats,
            clock=clock,
            truth=RunTruth(store, executor.ends, coordinator, self.liveness, clock),
            admission=self.admission,
        )
        self.turns = TurnRequests(
            runs=self.runs,
            conversations=self.conversations,
            branch_points=BranchPoints(store=store, tree=self.tree),
            media=self.media,
            packs=self.packs,
            providers=providers,
            settings=settings,
            admission=self.admission,
        )
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.packs.sync()
        await self.liveness.start()
        self.runs.start_background()
        # Also for native-TTL stores: their purge tidies what expiry left behind (indexes).
        self._sweeper = asyncio.create_task(self._sweep_expired(), name="ttl-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.runs.shutdown(self.settings.shutdown_grace_s)
        await self._erasure.close()
        await self.liveness.close()
        self.streams.close()

    def begin_shutdown(self) -> None:
        """A shutdown signal arrived: drain runs now, while the server still waits for the
        open streams (they end when their runs do; what is still open `CUT_MARGIN_S`
        after the grace is cut)."""
        self.runs.begin_drain(self.settings.shutdown_grace_s)
        self.streams.cut_after(self.settings.shutdown_grace_s + CUT_MARGIN_S)

    async def _sweep_expired(self) -> None:
        """Reclaim expired conversations (they are already invisible; this frees space),
        then media nothing references any more; in the first round and every
        `ORPHAN_SWEEP_EVERY` rounds after it, also blobs a crash left without a record."""
        rounds = 0
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                purged = await self.store.purge_expired(now=self._now())
                if purged:
                    log.info("purged %d expired conversations", purged)
                await self.media.sweep(orphans=rounds % ORPHAN_SWEEP_EVERY == 0)
            except Exception as exc:  # keep sweeping; the store may come back
                log.warning("expiry sweep failed: %r", exc)
            rounds += 1

    async def warm_up(self) -> dict[str, float]:
        """Pay the per-process first-use costs (`app.manager.warm_up`), bounded by
        `PARLEY_WARM_UP_TIMEOUT_S`; `readiness` says not ready while it runs."""
        self._warmed = False
        try:
            return await warm_up(
                store=self.store,
                coordinator=self.coordinator,
                context=self._builder,
                providers=self.providers,
                timeout_s=self.settings.warm_up_timeout_s,
            )
        finally:
            self._warmed = True

    async def readiness(self) -> dict[str, Any]:
        """What `/readyz` promises: the start-up warm-up is over (`NotReady` before),
        the store and the coordination backend answer a real round trip
        (`StoreUnavailable` otherwise), the instance holds its liveness lease (`NotReady`
        otherwise: after a partition, until its old lease expired and it took a new one)
        and at least one PromptPack is loaded (`NotReady` otherwise: no conversation could
        be created)."""
        if not self._warmed:
            raise NotReady("The instance is warming up (start-up); ready in a moment.")
        await self.store.ping()
        try:
            # bounded here for every backend: the SQL coordinator's round trip runs on a
            # pooled connection with no statement timeout, and a partition that began
            # after the store's ping answered hung /readyz for ~40 s (outside tester T3)
            async with asyncio.timeout(self.settings.store_timeout_s):
                await self.coordinator.ping()
        except TimeoutError:
            raise StoreUnavailable(
                "The coordination backend did not answer within "
                f"{self.settings.store_timeout_s:g} s."
            ) from None
        if not self.liveness.held:  # every turn would answer 503 turn_lock_lost
            raise NotReady(
                "This instance does not hold its liveness lease (the coordination backend "
                "was away); it takes it again within seconds, and refuses turns until then."
            )
        await self.packs.sync()
        if not len(self.packs):
            raise NotReady(
                f"No PromptPack is loaded: add *.pack.json files to {self.settings.packs_dir} "
                "or upload one with POST /packs."
            )
        return {
            "store": "ok",
            "coordination": "ok",
            "packs": len(self.packs),
            "providers": sorted(self.providers),
        }
