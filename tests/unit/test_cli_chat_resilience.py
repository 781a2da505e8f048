"""`parley chat` survives what a terminal user meets: a line that is not UTF-8 (outside
tester T4: a traceback) and a service restarting under a streamed reply (outside tester
T10: its re-attach attempts had no delay, so a restart ended the turn at once)."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import nullcontext

import httpx

from app.cli_chat import REATTACH_DELAYS, ChatOptions, run_chat
from app.settings import Settings
from tests.unit.test_cli import _Broken, _sse, app_client, messages

RUN = {"id": "r1", "status": "running"}
HEAD = _sse(
    (1, "run.created", {"run": RUN}),
    (2, "message.delta", {"message_id": "m1", "delta": "Hel"}),
)
TAIL = _sse(
    (3, "message.delta", {"message_id": "m1", "delta": "lo"}),
    (4, "run.completed", {"run": {**RUN, "status": "completed"}}),
)
SSE = {"content-type": "text/event-stream", "x-run-id": "r1"}


async def _chat(
    handler: Callable[[httpx.Request], httpx.Response], stdin: str = "hi\n"
) -> tuple[int, str, str, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    out, err = io.StringIO(), io.StringIO()
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as client:
        code = await run_chat(
            ChatOptions("c"),
            client_factory=lambda: nullcontext(client),
            stdin=io.StringIO(stdin),
            stdout=out,
            stderr=err,
            sleep=sleep,
        )
    return code, out.getvalue(), err.getvalue(), slept


async def test_a_non_utf8_line_is_reported_and_the_chat_goes_on(
    settings_factory: Callable[..., Settings],
) -> None:
    # what `sys.stdin` gives for Latin-1 bytes: lone surrogates (surrogateescape)
    stdin = io.TextIOWrapper(
        io.BytesIO(b"caf\xe9 latin1\nhello\n"), encoding="utf-8", errors="surrogateescape"
    )
    out, err = io.StringIO(), io.StringIO()
    async with app_client(settings_factory()) as client:
        code = await run_chat(
            ChatOptions("c", create=True),
            client_factory=lambda: nullcontext(client),
            stdin=stdin,
            stdout=out,
            stderr=err,
        )
        assert await messages(client, "c") == [("user", "hello"), ("assistant", "echo: hello")]
    assert code == 1, "a refused line makes the exit status 1, as a refused turn does"
    assert out.getvalue() == "echo: hello\n"
    assert err.getvalue() == (
        "error: invalid_input: the line is not valid UTF-8 (byte 0xe9 at character 4); not sent\n"
    )


async def test_a_restart_under_the_stream_is_survived_with_backoff() -> None:
    """The stream breaks; the service refuses connections for three attempts, then says 503
    with Retry-After: 5, then serves the rest of the run's events."""
    refusals = iter(["refuse", "refuse", "refuse", "503"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/conversations/c":
            return httpx.Response(200, json={"id": "c"})
        if request.method == "POST":
            return httpx.Response(200, headers=SSE, stream=_Broken(HEAD))
        step = next(refusals, "serve")
        if step == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if step == "503":
            return httpx.Response(
                503, headers={"Retry-After": "5"}, json={"code": "not_ready", "detail": "starting"}
            )
        assert request.headers["last-event-id"] == "2"
        return httpx.Response(200, headers=SSE, content=TAIL)

    code, out, err, slept = await _chat(handler)
    assert (code, out) == (0, "Hello\n")
    assert slept == [0.5, 1.0, 2.0, 5.0]  # at once, then backing off; Retry-After raises one
    notes = err.splitlines()
    assert len(notes) == 4 and all(
        n.startswith("[stream lost; re-attaching to run r1 in") for n in notes
    )
    assert "in 5 s (attempt 5 of 7)" in notes[-1]


async def test_the_chat_gives_up_after_every_backed_off_attempt() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/conversations/c":
            return httpx.Response(200, json={"id": "c"})
        return httpx.Response(200, headers=SSE, stream=_Broken(b""))

    code, out, err, slept = await _chat(handler)
    assert (code, out) == (1, "")
    assert slept == [d for d in REATTACH_DELAYS if d > 0]
    assert sum(slept) > 30, "a restart of up to half a minute is survived"
    last = err.splitlines()[-1]
    assert last.startswith("error: stream_interrupted: ") and "r1" in last


async def test_progress_between_breaks_starts_the_attempts_again() -> None:
    """Each re-attach gets one more event, then breaks: more breaks than attempts, but the
    reply completes."""
    events = [(n, "message.delta", {"message_id": "m1", "delta": str(n)}) for n in range(3, 12)]
    chunks = iter([_sse(e) for e in events])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/conversations/c":
            return httpx.Response(200, json={"id": "c"})
        if request.method == "POST":
            return httpx.Response(200, headers=SSE, stream=_Broken(HEAD))
        chunk = next(chunks, None)
        if chunk is None:
            return httpx.Response(
                200, headers=SSE, content=_sse((12, "run.completed", {"run": RUN}))
            )
        return httpx.Response(200, headers=SSE, stream=_Broken(chunk))

    code, out, err, slept = await _chat(handler)
    assert (code, err, slept) == (0, "", [])
    assert out == "Hel" + "".join(str(n) for n in range(3, 12)) + "\n"
