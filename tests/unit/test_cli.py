"""The `parley` command: argument parsing, `serve` wiring, `pack validate`, and the chat loop
against the in-process app (scripted stdin, captured stdout/stderr)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import cli, cli_chat
from app.cli_chat import ChatOptions, run_chat
from app.settings import ApiKey, Settings
from tests.conftest import REPO, running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply

SHIPPED_PACKS = sorted((REPO / "packs").glob("*.pack.json"))


# --- parsing -----------------------------------------------------------------------------


def test_parse_serve_defaults_and_overrides() -> None:
    args = cli.build_parser().parse_args(["serve"])
    assert (args.command, args.host, args.port, args.reload) == ("serve", None, None, False)
    args = cli.build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9", "--reload"])
    assert (args.host, args.port, args.reload) == ("0.0.0.0", 9, True)


def test_parse_chat() -> None:
    args = cli.build_parser().parse_args(["chat", "user:alice:conv:1"])
    assert args.conversation_id == "user:alice:conv:1"
    assert args.url is None
    assert (args.api_key, args.create, args.pack, args.prompt, args.user) == (
        None,
        False,
        "general-assistant",
        "chat",
        None,
    )
    argv = ["chat", "c1", "--url", "http://h:1", "--api-key", "k", "--create"]
    args = cli.build_parser().parse_args(
        [*argv, "--pack", "code-reviewer", "--prompt", "review", "--user", "bob"]
    )
    assert (args.url, args.api_key, args.create) == ("http://h:1", "k", True)
    assert (args.pack, args.prompt, args.user) == ("code-reviewer", "review", "bob")


@pytest.mark.parametrize(
    "argv",
    [[], ["chat"], ["pack"], ["pack", "validate"], ["serve", "--port", "x"], ["bogus"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: parley" in capsys.readouterr().err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("serve", "chat", "pack"))


def test_import_does_no_work() -> None:
    """Importing the CLI imports neither the server, the HTTP client nor the app."""
    code = (
        "import sys, app; before = set(sys.modules); import app.cli; "
        "heavy = ('uvicorn', 'httpx', 'app.main', 'app.cli_chat', 'app.packs', 'app.settings'); "
        "print(sorted(m for m in heavy if m in set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- serve -------------------------------------------------------------------------------


def _capture_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    for name in ("PARLEY_HOST", "PARLEY_PORT"):  # unset, and restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return calls


def test_serve_uses_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_uvicorn(monkeypatch)
    assert cli.main(["serve"]) == 0
    assert calls == [
        (
            "app.main:create_app",
            {"factory": True, "host": "127.0.0.1", "port": 8000, "reload": False},
        )
    ]


def test_serve_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_uvicorn(monkeypatch)
    monkeypatch.setenv("PARLEY_HOST", "0.0.0.0")
    monkeypatch.setenv("PARLEY_PORT", "9000")
    assert cli.main(["serve"]) == 0
    assert cli.main(["serve", "--port", "9100", "--reload"]) == 0
    assert cli.main(["serve", "--host", "::1", "--port", "1"]) == 0
    assert [(kw["host"], kw["port"], kw["reload"]) for _, kw in calls] == [
        ("0.0.0.0", 9000, False),
        ("0.0.0.0", 9100, True),
        ("::1", 1, False),
    ]
    # exported, so the app's own settings (start-up log, auth warning) agree
    assert (os.environ["PARLEY_HOST"], os.environ["PARLEY_PORT"]) == ("::1", "1")


# --- pack validate -----------------------------------------------------------------------


def test_validate_shipped_packs(capsys: pytest.CaptureFixture[str]) -> None:
    assert SHIPPED_PACKS, "the repository ships example packs"
    assert cli.main(["pack", "validate", *map(str, SHIPPED_PACKS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    oks = [line for line in lines if line.startswith("ok ")]
    assert len(oks) == len(SHIPPED_PACKS)
    assert f"ok {REPO / 'packs' / 'general-assistant.pack.json'} (general-assistant 1.0.0)" in oks


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((REPO / "packs" / "general-assistant.pack.json").read_text())
    del doc["name"]
    doc["surprise"] = True
    doc["prompts"]["chat"]["system_template"] = "Hi {{fragment:missing}}"
    broken = tmp_path / "broken.pack.json"
    broken.write_text(json.dumps(doc))
    good = REPO / "packs" / "code-reviewer.pack.json"

    assert cli.main(["pack", "validate", str(good), str(broken)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"ok {good} (code-reviewer 1.0.0)"
    problems = [line for line in lines if line.startswith(f"{broken}: ")]
    assert f"{broken}: name: required field is missing" in problems
    assert any(line.startswith(f"{broken}: surprise: unknown field") for line in problems)
    assert any("prompts.chat" in line and "missing" in line for line in problems), problems
    assert len(problems) == len(lines) - 1 >= 3


def test_validate_unreadable_and_malformed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_json = tmp_path / "bad.json"
    not_json.write_text("{ nope")
    not_a_pack = tmp_path / "list.json"
    not_a_pack.write_text("[1, 2]")
    missing = tmp_path / "missing.json"

    assert cli.main(["pack", "validate", str(not_json), str(not_a_pack), str(missing)]) == 1
    out = capsys.readouterr().out
    assert f"{not_json}: (root): not valid JSON: " in out
    assert f"{not_a_pack}: " in out and "ok " not in out
    assert f"{missing}: (root): cannot read: " in out


# --- chat wiring -------------------------------------------------------------------------


def test_main_chat_builds_options_from_args_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[ChatOptions, str]] = []

    async def fake_run_chat(options: ChatOptions, *, url: str) -> int:
        seen.append((options, url))
        return 7

    monkeypatch.setattr(cli_chat, "run_chat", fake_run_chat)
    monkeypatch.setenv("PARLEY_API_KEY", "env-key")
    monkeypatch.delenv("PARLEY_USER", raising=False)
    monkeypatch.delenv("PARLEY_URL", raising=False)
    assert cli.main(["chat", "c1"]) == 7
    assert cli.main(["chat", "c2", "--api-key", "flag-key", "--create", "--user", "bob"]) == 7
    monkeypatch.setenv("PARLEY_USER", "carol")
    monkeypatch.setenv("PARLEY_URL", "http://from-env:2")
    assert cli.main(["chat", "c3", "--url", "http://x:1"]) == 7
    assert cli.main(["chat", "c4"]) == 7
    assert seen == [
        (ChatOptions("c1", api_key="env-key", user_id="cli"), "http://127.0.0.1:8000"),
        (
            ChatOptions("c2", api_key="flag-key", create=True, user_id="bob"),
            "http://127.0.0.1:8000",
        ),
        (ChatOptions("c3", api_key="env-key", user_id="carol"), "http://x:1"),
        (ChatOptions("c4", api_key="env-key", user_id="carol"), "http://from-env:2"),
    ]


# --- the chat loop against the in-process app --------------------------------------------


class TTYInput(io.StringIO):
    def isatty(self) -> bool:
        return True


@asynccontextmanager
async def app_client(settings: Settings, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings, **kw) as client:
        yield client


async def chat(
    client: httpx.AsyncClient, options: ChatOptions, stdin: str | io.StringIO
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_chat(
        options,
        client_factory=lambda: nullcontext(client),
        stdin=io.StringIO(stdin) if isinstance(stdin, str) else stdin,
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


async def messages(client: httpx.AsyncClient, conv_id: str) -> list[tuple[str, str]]:
    r = await client.get(f"/conversations/{conv_id}/messages", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [(m["role"], m["content"]) for m in r.json()["data"]]


async def test_chat_creates_streams_and_quits(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_client(settings_factory()) as client:
        code, out, err = await chat(
            client,
            ChatOptions("user:alice:conv:1", create=True, user_id="alice"),
            "hello\n\n   \nsecond line\n/quit\nnever sent\n",
        )
        assert (code, err) == (0, "")
        assert out == "echo: hello\necho: second line\n"
        assert await messages(client, "user:alice:conv:1") == [
            ("user", "hello"),
            ("assistant", "echo: hello"),
            ("user", "second line"),
            ("assistant", "echo: second line"),
        ]
        conv = (await client.get("/conversations/user:alice:conv:1")).json()
        assert (conv["user_id"], conv["pack_id"], conv["prompt_name"]) == (
            "alice",
            "general-assistant",
            "chat",
        )

        # --create again: the existing conversation is reused; EOF ends the chat.
        code, out, err = await chat(client, ChatOptions("user:alice:conv:1", create=True), "3rd")
        assert (code, out, err) == (0, "echo: 3rd\n", "")
        assert len(await messages(client, "user:alice:conv:1")) == 6


async def test_chat_tty_prints_hint_and_prompts(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_client(settings_factory()) as client:
        code, out, _ = await chat(client, ChatOptions("c1", create=True), TTYInput("hi\n"))
    assert code == 0
    hint, rest = out.split("\n", 1)
    assert "'c1'" in hint and "/quit" in hint
    assert rest == "> echo: hi\n> \n"


async def test_chat_unknown_conversation_is_fatal(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_client(settings_factory()) as client:
        code, out, err = await chat(client, ChatOptions("nope"), "hello\n")
    assert (code, out) == (1, "")
    assert err.startswith("error: conversation_not_found: ")
    assert err.count("\n") == 1


async def test_chat_create_with_unknown_pack_is_fatal(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_client(settings_factory()) as client:
        code, out, err = await chat(client, ChatOptions("c", create=True, pack_id="nope"), "hi\n")
        assert (await client.get("/conversations/c")).status_code == 404
    assert (code, out) == (1, "")
    assert err.startswith("error: pack_not_found: ")


async def test_chat_conversation_deleted_mid_session(
    settings_factory: Callable[..., Settings],
) -> None:
    """A 404 on a send ends the chat with status 1; later lines are not sent."""
    async with app_client(settings_factory()) as client:
        sent: list[str] = []
        original_send = cli_chat.ChatSession.send

        async def send(self: cli_chat.ChatSession, text: str) -> None:
            if sent:  # from the second line on, the conversation is gone
                await client.delete("/conversations/gone")
            sent.append(text)
            await original_send(self, text)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cli_chat.ChatSession, "send", send)
            code, out, err = await chat(
                client, ChatOptions("gone", create=True), "first\nsecond\nthird\n"
            )
    assert sent == ["first", "second"]
    assert code == 1
    assert out == "echo: first\n"
    assert err.startswith("error: conversation_not_found: ") and err.count("error:") == 1


async def test_chat_recoverable_error_continues(
    settings_factory: Callable[..., Settings],
) -> None:
    async with app_client(settings_factory(max_message_bytes=1000)) as client:
        code, out, err = await chat(client, ChatOptions("c", create=True), "x" * 1001 + "\nsmall\n")
        assert await messages(client, "c") == [("user", "small"), ("assistant", "echo: small")]
    assert code == 1, "a failed turn makes the exit status 1"
    assert out == "echo: small\n"
    assert err.startswith("error: message_too_large: ")


async def test_chat_run_failed_is_reported(settings_factory: Callable[..., Settings]) -> None:
    fake = FakeOpenAI(
        replies=[Reply(text="partial answer that breaks", fail_after=2)],
        default=Reply(text="fine now"),
    )
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, app_client(settings, provider_client=http) as client:
        code, out, err = await chat(client, ChatOptions("c", create=True), "q1\nq2\n")
        assert await messages(client, "c") == [("user", "q2"), ("assistant", "fine now")]
    assert code == 1
    first, second = out.split("\n")[:2]
    assert first and "partial answer that breaks".startswith(first)
    assert second == "fine now"
    assert err.startswith("error: provider_error: ")


async def test_chat_with_api_keys(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        auth="keys",
        api_keys=[ApiKey(key="svc"), ApiKey(key="alice-key", role="user", user_id="alice")],
    )
    async with app_client(settings) as client:
        code, out, err = await chat(client, ChatOptions("c", create=True, api_key="svc"), "a\n")
        assert (code, out, err) == (0, "echo: a\n", "")
        code, out, err = await chat(
            client, ChatOptions("c2", create=True, api_key="alice-key", user_id="alice"), "b\n"
        )
        assert (code, out, err) == (0, "echo: b\n", "")
        code, out, err = await chat(client, ChatOptions("c", api_key="alice-key"), "a\n")
        assert (code, out) == (1, "")
        assert err.startswith("error: conversation_not_found: "), "another user's: a 404"
        code, out, err = await chat(client, ChatOptions("c"), "a\n")
        assert (code, out) == (1, "")
        assert err.startswith("error: unauthorized: ")


async def test_chat_unreachable_service() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
        code, out, err = await chat(client, ChatOptions("c"), "hi\n")
    assert (code, out) == (1, "")
    assert err.startswith("error: unreachable: cannot talk to http://127.0.0.1:9")


# --- stream resumption (a scripted server) -----------------------------------------------


def _sse(*events: tuple[int, str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()
        for seq, kind, data in events
    )


class _Broken(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body
        raise httpx.ReadError("connection reset")


async def test_chat_reattaches_after_a_broken_stream() -> None:
    """The stream breaks after two deltas: the client resumes from the run's event log with
    Last-Event-ID and prints the rest of the reply exactly once."""
    run = {"id": "r1", "status": "running"}
    head = _sse(
        (1, "run.created", {"run": run}),
        (2, "message.delta", {"message_id": "m1", "delta": "Hel"}),
        (3, "message.delta", {"message_id": "m1", "delta": "lo "}),
    )
    tail = _sse(
        (4, "message.delta", {"message_id": "m1", "delta": "there"}),
        (5, "message.completed", {"message": {"id": "m1", "role": "assistant",
                                              "content": "Hello there"}}),
        (6, "run.completed", {"run": {**run, "status": "completed"}}),
    )  # fmt: skip
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("last-event-id")))
        sse = {"content-type": "text/event-stream", "x-run-id": "r1"}
        if request.method == "GET" and request.url.path == "/conversations/c":
            return httpx.Response(200, json={"id": "c"})
        if request.method == "POST":
            return httpx.Response(200, headers=sse, stream=_Broken(head))
        return httpx.Response(200, headers=sse, content=tail)

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as client:
        code, out, err = await chat(client, ChatOptions("c"), "hi\n")
    assert (code, out, err) == (0, "Hello there\n", "")
    assert seen == [
        ("GET", "/conversations/c", None),
        ("POST", "/conversations/c/messages", None),
        ("GET", "/conversations/c/runs/r1/events", "3"),
    ]


async def test_chat_snapshot_and_tool_calls_and_requires_action() -> None:
    """A resumed stream that starts with `run.snapshot` prints the committed reply; tool calls
    are shown on stderr; `run.requires_action` is reported as a failed turn."""
    first = _sse(
        (1, "run.created", {"run": {"id": "r1"}}),
        (2, "tool_call.created", {"message_id": "m0",
                                  "tool_call": {"id": "t", "name": "lookup",
                                                "arguments": {"q": 1}}}),
    )  # fmt: skip
    snapshot = b"event: run.snapshot\ndata: " + json.dumps(
        {"run": {"id": "r1"}, "messages": [
            {"id": "u", "role": "user", "content": "hi"},
            {"id": "m1", "role": "assistant", "content": "From the snapshot"}]}
    ).encode() + b"\n\n" + _sse((0, "run.completed", {"run": {"id": "r1"}}))  # fmt: skip
    second = _sse(
        (1, "run.created", {"run": {"id": "r2"}}),
        (2, "run.requires_action", {"run": {"id": "r2"},
                                    "pending_tool_calls": [{"id": "x", "name": "client_fn"}]}),
    )  # fmt: skip
    posts = iter([first, second])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/conversations/c":
            return httpx.Response(200, json={"id": "c"})
        headers = {"content-type": "text/event-stream"}
        if request.method == "POST":
            return httpx.Response(200, headers=headers, content=next(posts))
        return httpx.Response(200, headers=headers, content=snapshot)

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as client:
        code, out, err = await chat(client, ChatOptions("c"), "hi\nagain\n")
    assert code == 1
    assert out == "From the snapshot\n"
    assert '[tool call: lookup({"q": 1})]' in err
    assert "error: requires_action: " in err and "client_fn" in err


async def test_chat_plain_json_reply_and_non_problem_errors() -> None:
    """A server that answers with a JSON turn result still gets its reply printed; an error
    that is not problem+json is reported by status."""
    replies = iter(
        [
            httpx.Response(200, json={"reply": {"id": "m", "role": "assistant", "content": "ok"}}),
            httpx.Response(500, text="Internal Server Error"),
            httpx.Response(200, text="not json"),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"id": "c"})
        return next(replies)

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as client:
        code, out, err = await chat(client, ChatOptions("c"), "a\nb\nc\n")
    assert (code, out) == (1, "ok\n")
    assert err.splitlines() == [
        "error: http_500: Internal Server Error",
        "error: bad_response: expected an event stream or a JSON turn result",
    ]
