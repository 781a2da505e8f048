"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

A real uvicorn (SQLite store, mock provider, `PARLEY_AUTH=keys`) receives:

1. every operation's generated cases (schemathesis' strategies; `derandomize=True`: reproducible);
2. the same cases "poisoned" by a hypothesis strategy that replaces strings with lone
   surrogates and NULs and integers with huge values in every body, query and path field;
3. stateful sequences (links inferred from the document: create a conversation, then
   read, patch, send turns to it, page its messages, ...).

The fuzzer uses a `user` key. A sentinel conversation of another user, created with the
service key before the run, must read back byte-identical afterwards, and no response
may be a 5xx. Every response, poisoned requests' too, must also agree with the document:
schemathesis' conformance checks (status code declared, content type declared, headers
and body valid against the declared schema). The request count is printed so the run can
be quoted.

Of the rest of `--checks all`, `positive_data_acceptance` is not applied: the service
rightly refuses some schema-valid values the document cannot express (an opaque cursor it
did not issue, bytes whose sniffed type is not media, NULs inside object keys), and
`negative_data_rejection` needs negative generation, which this run does not do.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e

STATELESS_EXAMPLES = 55  # per operation
POISONED_EXAMPLES = 35  # per operation
STATEFUL_EXAMPLES = 40
STATEFUL_STEPS = 12
MIN_REQUESTS = 2000
MIN_STATEFUL_REQUESTS = 150

SERVICE_KEY = "fuzz-service-key"
USER_KEY = "fuzz-user-key"
FUZZ_USER = "fuzzer"

POISON_STRINGS = ["a\ud83d", "\udc00z", "a\x00b", "\x00"]
URL_SAFE = ":/?&=%@+,;~*'()!$[]#"
POISON_INTS = [2**63, -(2**63) - 1, 2**70, 300_000_000_000, 10**30]


def usable_create(body: Any) -> Any:
    body = dict(body) if isinstance(body, dict) else {}
    # conversation_id too: a server-chosen id never collides with an earlier sequence's
    for name in (
        "pack_version",
        "provider",
        "variables",
        "user_id",
        "context_policy",
        "conversation_id",
    ):
        body.pop(name, None)
    return {**body, "pack_id": "general-assistant", "prompt_name": "chat"}


def usable_message(body: Any) -> Any:
    body = dict(body) if isinstance(body, dict) else {}
    body.pop("parts", None)
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        body["content"] = "hello"
    return body


USABLE_BODY = {
    ("POST", "/conversations"): usable_create,
    ("POST", "/conversations/{conversation_id}/messages"): usable_message,
}


CONFORMANCE_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.stateful = 0
        self.by_status: dict[int, int] = {}
        self.server_errors: list[str] = []
        self.disagreements: dict[str, str] = {}  # "label: check title" -> first example

    def record(self, label: str, status: int, body: str) -> None:
        self.requests += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status >= 500:
            self.server_errors.append(f"{label} -> {status}: {body[:300]}")

    def conform(self, label: str, case: Any, response: Any) -> None:
        """Record every way `response` disagrees with the document. A request the HTTP
        server's parser refused (uvicorn's plain-text 400: a generated header or path that
        is not valid HTTP) never reached the app, so the document does not describe it."""
        if response.status_code == 400 and response.text == "Invalid HTTP request received.":
            return
        try:
            case.validate_response(response, checks=CONFORMANCE_CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{label}: {getattr(failure, 'title', type(failure).__name__)}"
                example = f"{response.status_code} {response.text[:200]} | {failure}"[:600]
                self.disagreements.setdefault(key, example)


def poison_value(value: Any, rnd: random.Random, *, surrogates: bool) -> Any:
    """`value` with some strings/integers replaced by hostile ones (recursively)."""
    strings = POISON_STRINGS if surrogates else [s for s in POISON_STRINGS if "\x00" in s]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return rnd.choice(strings) if rnd.random() < 0.5 else value
    if isinstance(value, int):
        return rnd.choice(POISON_INTS) if rnd.random() < 0.5 else value
    if isinstance(value, dict):
        out = {k: poison_value(v, rnd, surrogates=surrogates) for k, v in value.items()}
        if rnd.random() < 0.2:
            out[rnd.choice(strings)] = rnd.choice(strings)
        return out
    if isinstance(value, list):
        return [poison_value(v, rnd, surrogates=surrogates) for v in value]
    return value


def poison_url_parts(case: Any, rnd: random.Random) -> Any:
    """Path and query get NULs only: a URL cannot carry a lone surrogate at all. (The body
    is poisoned after serialization, see `send`.)"""
    if case.query:
        case.query = poison_value(dict(case.query), rnd, surrogates=False)
    if case.path_parameters:
        case.path_parameters = poison_value(dict(case.path_parameters), rnd, surrogates=False)
    return case


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzz")
    keys = [
        {"key": SERVICE_KEY, "role": "service"},
        {"key": USER_KEY, "role": "user", "user_id": FUZZ_USER},
    ]
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{tmp}/parley.db",
        "PARLEY_AUTH": "keys",
        "PARLEY_API_KEYS": json.dumps(keys),
        "PARLEY_MAX_CONCURRENT_EXECUTIONS": "0",
        "PARLEY_TURN_LOCK_TIMEOUT_S": "2",
        "PARLEY_LOG_LEVEL": "ERROR",
    }
    with uvicorn_server(env) as url:
        yield url


def sentinel_snapshot(url: str) -> tuple[bytes, bytes]:
    auth = {"Authorization": f"Bearer {SERVICE_KEY}"}
    conv = httpx.get(f"{url}/conversations/sentinel", headers=auth, timeout=10)
    msgs = httpx.get(f"{url}/conversations/sentinel/messages", headers=auth, timeout=10)
    assert conv.status_code == 200 and msgs.status_code == 200
    return conv.content, msgs.content


@pytest.mark.timeout(600)  # ~2,500 requests, each response checked against the document
def test_fuzz_the_whole_api(server: str, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {SERVICE_KEY}"}
    r = httpx.post(
        f"{server}/conversations",
        json={
            "pack_id": "general-assistant",
            "prompt_name": "chat",
            "user_id": "sentinel-owner",
            "conversation_id": "sentinel",
            "metadata": {"keep": "exactly this"},
        },
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{server}/conversations/sentinel/messages",
        json={"content": "a message that must survive"},
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    before = sentinel_snapshot(server)

    document = httpx.get(f"{server}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)

    @schema.hook
    def before_generate_body(context: Any, strategy: Any) -> Any:
        """Half the generated bodies of the operations that create state are made usable
        (an existing pack, the key's own user, a non-blank message), so stateful links have
        conversations to follow; the other half stay whatever the schema allows."""
        fix = USABLE_BODY.get((context.operation.method.upper(), context.operation.path))
        if fix is None:
            return strategy
        return st.one_of(strategy, strategy.map(fix))

    tally = Tally()
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    session = httpx.Client(base_url=server, timeout=30)

    def send(case: Any, label: str, rnd: random.Random | None = None) -> None:
        if rnd is not None:
            poison_url_parts(case, rnd)
        request = case.as_transport_kwargs(base_url=server, headers=headers)
        body = request.pop("json", None)
        if rnd is not None and body is not None:
            body = poison_value(body, rnd, surrogates=True)  # surrogates as JSON escapes
        content = request.pop("data", None)
        if body is not None:
            content = json.dumps(body, ensure_ascii=True)
            request.setdefault("headers", {})["content-type"] = "application/json"
        request.pop("cookies", None)
        # NULs in path parameters travel percent-encoded (%00), as a client would send them
        url = quote(request.pop("url"), safe=URL_SAFE)
        response = session.request(
            request.pop("method"),
            url,
            content=content,
            headers=request.get("headers"),
            params=request.get("params"),
        )
        tally.record(label, response.status_code, response.text)
        tally.conform(label, case, response)

    base_settings = hypothesis.settings(
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )

    def fuzz(operation: Any) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @hypothesis.settings(base_settings, max_examples=STATELESS_EXAMPLES)
        @given(case=operation.as_strategy())
        def plain(case: Any) -> None:
            send(case, label)

        @hypothesis.settings(base_settings, max_examples=POISONED_EXAMPLES)
        @given(case=operation.as_strategy(), rnd=st.randoms(use_true_random=False))
        def hostile(case: Any, rnd: random.Random) -> None:
            send(case, f"poisoned {label}", rnd)

        plain()
        hostile()

    for result in schema.get_all_operations():
        fuzz(result.ok())

    machine = schema.as_state_machine()

    class Machine(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": server, "headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            tally.stateful += 1
            label = f"stateful {case.method} {case.path}"
            tally.record(label, response.status_code, response.text)
            tally.conform(label, case, response)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            return None  # our own check: no 5xx (recorded above)

    # The server's state carries over between sequences (that is the point), so which
    # rules are enabled can differ between hypothesis' runs of one choice sequence; when
    # hypothesis notices, it stops the stateful phase with FlakyStrategyDefinition. That is
    # a property of the generator, not a server failure: every response sent so far was
    # checked, and a minimum of stateful requests is still required below.
    try:
        Machine.run(
            settings=hypothesis.settings(
                base_settings,
                max_examples=STATEFUL_EXAMPLES,
                stateful_step_count=STATEFUL_STEPS,
            )
        )
    except hypothesis.errors.FlakyStrategyDefinition:
        print(f"\nstateful phase stopped by hypothesis after {tally.stateful} requests")
    session.close()

    after = sentinel_snapshot(server)
    print(
        f"\nschemathesis: {tally.requests} requests ({tally.stateful} in stateful sequences), "
        f"by status "
        f"{dict(sorted(tally.by_status.items()))}, {len(tally.server_errors)} x 5xx, "
        f"{len(tally.disagreements)} kinds of response that disagree with the document"
    )
    assert tally.server_errors == []
    disagreements = "\n".join(f"{k}\n    {v}" for k, v in tally.disagreements.items())
    assert not tally.disagreements, disagreements
    assert tally.requests >= MIN_REQUESTS
    assert tally.stateful >= MIN_STATEFUL_REQUESTS
    assert after == before, "the sentinel conversation of another user changed"
