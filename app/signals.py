"""Start draining when the server is told to stop.

On SIGTERM (or SIGINT) uvicorn stops listening, then waits for every open request,
streams included, to finish before it runs the lifespan's shutdown. A stream ends when its
run does, so the manager must hear of the signal *then*, not at lifespan shutdown:
`chain_shutdown_signals` wraps the server's handlers (installed before the lifespan
starts) so that the signal first calls `on_signal` on the event loop, then does what the
server's handler does. Without a server handler (not the main thread, or a process that
kept the default handlers, as in-process tests) nothing is installed. `restore()` puts the
server's handlers back.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def chain_shutdown_signals(on_signal: Callable[[], None]) -> Callable[[], None]:
    """Install the wrappers; return `restore`."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Callable[[int, FrameType | None], object], object]] = {}
    for sig in SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous) or previous is signal.default_int_handler:
            continue  # no server handler to chain to

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., object] = previous
        ) -> None:
            loop.call_soon_threadsafe(on_signal)
            previous(signum, frame)

        signal.signal(sig, handler)
        installed[sig] = (handler, previous)

    def restore() -> None:
        for sig, (handler, previous) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)  # type: ignore[arg-type]

    return restore
