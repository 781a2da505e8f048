"""`app.api.sse_response.RunEventStream`, the SSE response of a follow: frames in order
then the last chunk, `: ping` comments, a client's disconnect, the cut at shutdown, a
cancellation of the request itself, HEAD."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from app.api.sse import encode_event
from app.api.sse_response import PING, event_stream
from app.domain.run import RunEvent
from app.manager.open_streams import OpenStreams


class Client:
    """The ASGI side: what was sent, and a disconnect on demand."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def send(self, message: Any) -> None:
        self.messages.append(message)

    async def receive(self) -> Any:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def ended(self) -> bool:
        """The body's last chunk was sent, and nothing after it."""
        last = [i for i, m in enumerate(self.messages) if m.get("more_body") is False]
        return last == [len(self.messages) - 1]


def event(seq: int, type_: str = "message.delta") -> RunEvent:
    return RunEvent(seq=seq, type=type_, data={"message_id": "m", "delta": str(seq)})


async def events(
    items: list[RunEvent], closed: list[str], *, then_wait: bool = False
) -> AsyncGenerator[RunEvent, None]:
    try:
        for item in items:
            yield item
        if then_wait:
            await asyncio.Event().wait()  # a run that goes on
    finally:
        closed.append("closed")


async def respond(
    gen: AsyncGenerator[RunEvent, None], client: Client, streams: OpenStreams, **kw: Any
) -> None:
    response = await event_stream(
        gen,
        ping_s=kw.pop("ping_s", 15.0),
        run_id="run-1",
        streams=streams,
        first_wait_s=1.0,
    )
    scope = {"type": "http", "method": kw.pop("method", "POST")}
    await response(scope, client.receive, client.send)


async def test_frames_in_order_then_the_end() -> None:
    client, closed = Client(), []
    items = [event(1, "run.created"), event(2), event(3, "run.completed")]
    await respond(events(items, closed), client, OpenStreams())
    start = client.messages[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert (b"x-run-id", b"run-1") in start["headers"]
    expected = encode_event(items[0], retry=2000) + b"".join(encode_event(e) for e in items[1:])
    assert client.body == expected and client.ended and closed == ["closed"]


async def test_the_terminal_event_goes_with_the_end_of_the_body_in_one_send() -> None:
    for terminal in ("run.completed", "run.failed", "run.cancelled", "run.requires_action"):
        client, closed = Client(), []
        items = [event(1, "run.created"), event(2), event(3, terminal)]
        await respond(events(items, closed), client, OpenStreams())
        last = {"type": "http.response.body", "body": encode_event(items[2]), "more_body": False}
        assert client.messages[-1] == last and len(client.messages) == 4, terminal
        assert client.ended and closed == ["closed"]


async def test_a_first_event_that_is_terminal_ends_the_body_with_its_retry_hint() -> None:
    client, closed = Client(), []
    items = [event(4, "run.completed")]
    await respond(events(items, closed), client, OpenStreams())
    assert [m.get("more_body") for m in client.messages[1:]] == [False]
    assert client.body == encode_event(items[0], retry=2000) and closed == ["closed"]


async def test_a_follow_that_ends_without_a_terminal_event_still_ends_the_body() -> None:
    client, closed = Client(), []
    await respond(events([event(1, "run.created"), event(2)], closed), client, OpenStreams())
    assert client.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert client.ended and closed == ["closed"]


async def test_pings_while_quiet() -> None:
    client, closed, streams = Client(), [], OpenStreams()
    task = asyncio.create_task(
        respond(events([event(1)], closed, then_wait=True), client, streams, ping_s=0.05)
    )
    await asyncio.sleep(0.18)
    assert client.body.count(PING) >= 2
    client.gone.set()
    await task


async def test_a_disconnect_closes_the_follow_and_ends_quietly() -> None:
    client, closed, streams = Client(), [], OpenStreams()
    task = asyncio.create_task(respond(events([event(1)], closed, then_wait=True), client, streams))
    await asyncio.sleep(0.05)
    assert closed == [] and len(streams) == 1
    client.gone.set()
    await asyncio.wait_for(task, 1)  # returns: no CancelledError escapes
    assert closed == ["closed"] and len(streams) == 0


async def test_the_cut_at_shutdown_ends_the_body_cleanly() -> None:
    client, closed, streams = Client(), [], OpenStreams()
    task = asyncio.create_task(respond(events([event(1)], closed, then_wait=True), client, streams))
    await asyncio.sleep(0.05)
    streams.cut_after(0.01)
    await asyncio.wait_for(task, 1)
    assert client.ended and closed == ["closed"]
    assert client.body == encode_event(event(1), retry=2000)


async def test_a_cancelled_request_is_still_cancelled() -> None:
    client, closed = Client(), []
    task = asyncio.create_task(
        respond(events([event(1)], closed, then_wait=True), client, OpenStreams())
    )
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    assert closed == ["closed"]


async def test_head_sends_headers_and_an_empty_body() -> None:
    client, closed = Client(), []
    await respond(events([event(1)], closed, then_wait=True), client, OpenStreams(), method="HEAD")
    assert client.messages[0]["status"] == 200 and client.body == b"" and client.ended
    assert closed == ["closed"]  # the follow is not left open


async def test_a_log_that_stays_unreadable_ends_the_body_cleanly(caplog: Any) -> None:
    """Outside tester T3: past `outage_s` the follow raises `StoreUnavailable` after the
    response started. The body ends (its last chunk, so the client sees a clean end and
    reconnects with Last-Event-ID) with a warning, not an ASGI traceback and a cut body."""
    from app.errors import StoreUnavailable

    async def failing() -> AsyncGenerator[RunEvent, None]:
        yield event(1, "run.created")
        yield event(2)
        raise StoreUnavailable("The state store is unavailable (simulated)")

    client = Client()
    await respond(failing(), client, OpenStreams())
    assert client.ended
    assert client.body.startswith(encode_event(event(1, "run.created"), retry=2000))
    assert "could not be read" in caplog.text
