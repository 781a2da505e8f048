"""`parley chat`: a terminal client for one conversation, streaming replies over SSE.

Each line read from the input is sent as `POST /conversations/{id}/messages` with
`stream: true`; `message.delta` texts are written as they arrive and the reply ends with a
newline at the run's terminal event. Problems go to the error stream as
`error: <code>: <detail>`. A turn that fails is reported and the chat goes on, except for
errors no later line can fix (unknown conversation, bad API key, unreachable service), which
end it. The exit status is 1 if any turn failed, else 0.

If the stream breaks before the terminal event, the client re-attaches to the run's event
log (`GET .../runs/{run_id}/events` with `Last-Event-ID`), so a reply is never lost or
printed twice: at once, then after 0.5, 1, 2, 4, 8 and 16 s (`REATTACH_DELAYS`, longer when
a 502/503/504 asks for it with `Retry-After`, at most `MAX_DELAY_S`), saying so on the error
stream, so a restarting service or a load balancer moving the client is survived (outside
tester T10: three attempts in a tight loop ended the turn within milliseconds). An attempt
that gets new events starts the count again.

A line that is not valid UTF-8 (stdin is decoded with `surrogateescape`) is reported as
`error: invalid_input: ...` and not sent; the chat goes on (outside tester T4: a traceback).

Everything is injectable for tests: the input/output streams and the factory of the
`httpx.AsyncClient` (which must carry the service's base URL).

How replies, notices and problems are printed is `app.cli_chat_render`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from app.cli_chat_errors import ChatError
from app.cli_chat_render import ChatPrinter, StreamedTurn, get_path, json_object

ClientFactory = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]
Sleep = Callable[[float], Awaitable[None]]

QUIT_COMMANDS = frozenset({"/quit", "/exit"})
TERMINAL_EVENTS = frozenset({"run.completed", "run.failed", "run.cancelled", "run.requires_action"})
REATTACH_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each attempt
MAX_DELAY_S = 30.0  # the longest wait a Retry-After may ask for
TRANSIENT_STATUSES = frozenset({502, 503, 504})  # a re-attach answered so is tried again
# Connect quickly; between SSE frames the server sends a ping every 15 s (by default).
TIMEOUT = httpx.Timeout(10.0, read=300.0)

__all__ = ["ChatError", "ChatOptions", "ChatSession", "ClientFactory", "run_chat"]


@dataclass(frozen=True)
class ChatOptions:
    """What `parley chat` was asked to do (URL and streams are given separately)."""

    conversation_id: str
    api_key: str | None = None
    create: bool = False
    pack_id: str = "general-assistant"
    prompt_name: str = "chat"
    user_id: str = "cli"


class ChatSession:
    """One chat over an open client. `run()` is the whole read-send-print loop."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        options: ChatOptions,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self._sleep = sleep
        self.options = options
        self.stdin = stdin
        self.stdout = stdout
        self.printer = ChatPrinter(stdout, stderr)
        self.headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self.conv_path = f"/conversations/{quote(options.conversation_id, safe='')}"

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> int:
        interactive = self.stdin.isatty()
        try:
            await self.prepare()
        except ChatError as exc:
            self.printer.report(exc)
            return 1
        if interactive:
            self.stdout.write(
                f"Chatting in {self.options.conversation_id!r} at {self.client.base_url}. "
                "Type a message and press Enter; /quit or Ctrl-D to leave.\n"
            )
        failed = False
        while True:
            line = self._read_line(interactive)
            if not line:  # EOF
                if interactive:
                    self.stdout.write("\n")
                break
            text = line.rstrip("\r\n")
            if text.strip() in QUIT_COMMANDS:
                break
            if not text.strip():
                continue
            try:
                _check_encodable(text)
                await self.send(text)
            except ChatError as exc:
                failed = True
                self.printer.report(exc)
                if exc.fatal:
                    return 1
        self.stdout.flush()
        return 1 if failed else 0

    def _read_line(self, interactive: bool) -> str:
        """The next input line with its newline, or "" at end of input. On the process's
        own terminal, `input()` gives line editing and history (via `readline`)."""
        if not interactive:
            return self.stdin.readline()
        if self.stdin is sys.stdin and self.stdout is sys.stdout:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (enables editing for input())
            try:
                return input("> ") + "\n"
            except EOFError:
                return ""
        self.stdout.write("> ")
        self.stdout.flush()
        return self.stdin.readline()

    async def prepare(self) -> None:
        """Create the conversation (`--create`; an existing one is reused) or check that it
        exists, so a wrong id or key fails before anything is typed."""
        opts = self.options
        if opts.create:
            body = {
                "conversation_id": opts.conversation_id,
                "pack_id": opts.pack_id,
                "prompt_name": opts.prompt_name,
                "user_id": opts.user_id,
            }
            response = await self._request("POST", "/conversations", json=body)
            if response.status_code == 201:
                return
            error = ChatError.from_response(response)
            if error.code != "conversation_exists":
                error.fatal = True
                raise error
            # Fall through: make sure the existing one is visible to this key.
        response = await self._request("GET", self.conv_path)
        if response.status_code != 200:
            error = ChatError.from_response(response)
            error.fatal = True
            raise error

    # --- one turn ------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Send one message and print the streamed reply; `ChatError` if the turn failed."""
        turn = StreamedTurn()
        body = {"content": text, "stream": True}
        try:
            async with aconnect_sse(
                self.client, "POST", f"{self.conv_path}/messages", json=body, headers=self.headers
            ) as source:
                response = source.response
                if response.status_code >= 300:
                    await response.aread()
                    raise ChatError.from_response(response)
                turn.run_id = response.headers.get("X-Run-Id")
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()
                    self.printer.print_result(turn, response)
                    return
                await self._consume(source.aiter_sse(), turn)
        except httpx.TransportError as exc:
            if turn.run_id is None:
                raise ChatError.from_transport(exc, str(self.client.base_url)) from exc
        attempts = 0
        while turn.terminal is None:
            if turn.run_id is None or attempts >= len(REATTACH_DELAYS):
                self.printer.end_line(turn)
                raise ChatError(
                    "stream_interrupted",
                    "the event stream ended before the run finished"
                    + (f" (run {turn.run_id}; {len(REATTACH_DELAYS)} re-attach attempts)"
                       if turn.run_id else ""),
                )  # fmt: skip
            delay = REATTACH_DELAYS[attempts]
            if attempts:
                delay = max(delay, turn.retry_after)
            attempts += 1
            if delay > 0:
                self.printer.notice(
                    f"[stream lost; re-attaching to run {turn.run_id} in {delay:g} s "
                    f"(attempt {attempts} of {len(REATTACH_DELAYS)})]"
                )
                await self._sleep(delay)
            seen, turn.retry_after = turn.last_seq, 0.0
            try:
                await self._reattach(turn)
            except ChatError:
                self.printer.end_line(turn)
                raise
            if turn.last_seq > seen:
                attempts = 0  # it made progress: the next break starts again
        self.printer.finish(turn, turn.terminal)

    async def _reattach(self, turn: StreamedTurn) -> None:
        """Follow the run's event log from the last event seen."""
        assert turn.run_id is not None
        path = f"{self.conv_path}/runs/{quote(turn.run_id, safe='')}/events"
        headers = {**self.headers, "Last-Event-ID": str(turn.last_seq)}
        try:
            async with aconnect_sse(self.client, "GET", path, headers=headers) as source:
                if source.response.status_code in TRANSIENT_STATUSES:
                    await source.response.aread()
                    turn.retry_after = _retry_after(source.response)
                    return  # e.g. the service restarting: counted as an attempt
                if source.response.status_code >= 300:
                    await source.response.aread()
                    error = ChatError.from_response(source.response)
                    # e.g. run_not_found (its log expired): this turn is lost, not the chat
                    error.fatal = source.response.status_code in {401, 403}
                    raise error
                await self._consume(source.aiter_sse(), turn)
        except httpx.TransportError:
            return  # counted as an attempt by the caller

    async def _consume(self, events: AsyncIterator[ServerSentEvent], turn: StreamedTurn) -> None:
        async for sse in events:
            if sse.id and sse.id.isdigit():
                turn.last_seq = max(turn.last_seq, int(sse.id))
            data = json_object(sse.data)
            if sse.event == "run.created":
                turn.run_id = get_path(data, "run", "id") or turn.run_id
            elif sse.event == "message.delta":
                message_id, delta = data.get("message_id"), data.get("delta")
                if isinstance(message_id, str) and isinstance(delta, str):
                    self.printer.write(turn, message_id, delta)
            elif sse.event == "message.completed":
                self.printer.top_up(turn, data.get("message"))
            elif sse.event == "run.snapshot":
                for message in data.get("messages") or []:
                    self.printer.top_up(turn, message)
            elif sse.event == "tool_call.created":
                name = get_path(data, "tool_call", "name")
                args = get_path(data, "tool_call", "arguments")
                self.printer.tool_call(turn, name, args)
            if sse.event in TERMINAL_EVENTS:
                turn.terminal = sse
                return

    # --- HTTP ----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, path, headers=self.headers, **kwargs)
        except httpx.TransportError as exc:
            raise ChatError.from_transport(exc, str(self.client.base_url)) from exc


def _check_encodable(text: str) -> None:
    """Refuse a line holding lone surrogates: bytes that were not UTF-8 on input."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(exc.object[exc.start])
        what = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"U+{bad:04X}"
        raise ChatError(
            "invalid_input",
            f"the line is not valid UTF-8 ({what} at character {exc.start + 1}); not sent",
        ) from None


def _retry_after(response: httpx.Response) -> float:
    """The seconds a `Retry-After` asks for (at most MAX_DELAY_S), 0 without one."""
    raw = response.headers.get("retry-after", "").strip()
    return min(float(raw), MAX_DELAY_S) if raw.isdigit() else 0.0


def default_client_factory(url: str) -> ClientFactory:
    """An `httpx.AsyncClient` for the service at `url`."""
    return lambda: httpx.AsyncClient(base_url=url, timeout=TIMEOUT)


async def run_chat(
    options: ChatOptions,
    *,
    url: str = "http://127.0.0.1:8000",
    client_factory: ClientFactory | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """Run the chat loop; returns the exit status. Streams default to the process's."""
    factory = client_factory or default_client_factory(url)
    async with factory() as client:
        session = ChatSession(
            client,
            options,
            stdin=stdin or sys.stdin,
            stdout=stdout or sys.stdout,
            stderr=stderr or sys.stderr,
            sleep=sleep,
        )
        return await session.run()
