"""The scripted session of tests/clients/ with the Python client generated from the committed
document by openapi-python-client (`parley_client`, importable from the folder given as
argv[1]). Same steps as tests/clients/ts/session.ts. Runs in the generator's isolated
environment (it has what the generated client needs), never in the app's. Prints one JSON
line with what it saw; any failed expectation raises (non-zero exit).

Usage: python session.py CLIENT_DIR  (PARLEY_URL, PARLEY_KEY in the environment)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, sys.argv[1])

from parley_client import AuthenticatedClient
from parley_client.api.conversations import (
    create_conversation,
    delete_conversation,
    get_conversation,
    update_conversation,
)
from parley_client.api.messages import get_message, list_messages, send_message
from parley_client.api.packs import get_pack, list_packs
from parley_client.api.runs import get_run
from parley_client.models import (
    Conversation,
    CreateConversation,
    MessageDeltaData,
    MessageDeltaEvent,
    PatchConversation,
    PatchConversationMetadataType0,
    Problem,
    ProblemCode,
    RunCompletedData,
    RunCompletedEvent,
    RunCreatedData,
    RunCreatedEvent,
    RunStatus,
    SendMessage,
    TurnResponse,
)

BASE_URL = os.environ["PARLEY_URL"]
client = AuthenticatedClient(base_url=BASE_URL, token=os.environ["PARLEY_KEY"])
seen: dict[str, Any] = {}


def expect_problem(result: object, status: int, code: ProblemCode) -> None:
    assert isinstance(result, Problem), f"expected a {status} problem, got {result!r}"
    assert result.status == status and result.code == code, result
    seen[str(status)] = result.code.value


def sse_frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """One `{"event", "id", "data"}` per SSE event, the text of its lines (the document's
    `RunStreamEvent`; `data` is a JSON document of the event's payload schema)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                yield {"event": fields["event"], "id": fields["id"], "data": fields["data"]}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


packs = list_packs.sync(client=client)
assert packs is not None and not isinstance(packs, Problem)
assert any(p.id == "general-assistant" for p in packs.data)
pack = get_pack.sync("general-assistant", client=client)
assert pack is not None and not isinstance(pack, Problem)
assert "chat" in pack.prompts.additional_properties

conversation_id = f"py-{time.time_ns()}"
create_body = CreateConversation(
    pack_id="general-assistant",
    prompt_name="chat",
    user_id="client-session",
    conversation_id=conversation_id,
)
created = create_conversation.sync_detailed(client=client, body=create_body)
assert created.status_code == 201 and isinstance(created.parsed, Conversation)
conv = created.parsed
assert conv.id == conversation_id and created.headers["etag"].startswith(f'"{conv.version}.')

for text in ("hello", "second"):
    turn = send_message.sync(conversation_id, client=client, body=SendMessage(content=text))
    assert isinstance(turn, TurnResponse), turn
    assert turn.reply.content == f"echo: {text}"
    assert turn.status.value == "completed" and turn.finish_reason is not None

# the generated client's own httpx client, for the raw stream
body = SendMessage(content="stream me please", stream=True).to_dict()
deltas: list[str] = []
ids: list[int] = []
terminal: RunCompletedData | None = None
with client.get_httpx_client().stream(
    "POST", f"/conversations/{conversation_id}/messages", json=body
) as response:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for frame in sse_frames(response.iter_lines()):
        ids.append(int(frame["id"]))
        if frame["event"] == "run.created":
            RunCreatedData.from_dict(json.loads(RunCreatedEvent.from_dict(frame).data))
        if frame["event"] == "message.delta":
            event = MessageDeltaEvent.from_dict(frame)
            deltas.append(MessageDeltaData.from_dict(json.loads(event.data)).delta)
        if frame["event"] == "run.completed":
            done = RunCompletedEvent.from_dict(frame)
            terminal = RunCompletedData.from_dict(json.loads(done.data))
assert terminal is not None, "the stream ends with run.completed"
assert "".join(deltas) == "echo: stream me please"
assert ids == list(range(1, len(ids) + 1))
seen["deltas"] = len(deltas)

run = get_run.sync(conversation_id, terminal.run.id, client=client)
assert not isinstance(run, Problem) and run is not None and run.status == RunStatus.COMPLETED

history = list_messages.sync(conversation_id, client=client, limit=50)
assert history is not None and not isinstance(history, Problem)
roles = [m.role.value for m in history.data]
assert roles == ["user", "assistant"] * 3, roles
one = get_message.sync(conversation_id, history.data[0].id, client=client)
assert not isinstance(one, Problem) and one is not None
assert one.children_ids == [history.data[1].id]

expect_problem(
    get_conversation.sync("no-such-conversation", client=client),
    404,
    ProblemCode.CONVERSATION_NOT_FOUND,
)
expect_problem(
    create_conversation.sync(client=client, body=create_body), 409, ProblemCode.CONVERSATION_EXISTS
)
metadata = PatchConversationMetadataType0.from_dict({"k": "v"})
expect_problem(
    update_conversation.sync(
        conversation_id, client=client, body=PatchConversation(metadata=metadata), if_match='"999"'
    ),
    412,
    ProblemCode.PRECONDITION_FAILED,
)
bad_prompt = CreateConversation.from_dict(
    {**create_body.to_dict(), "conversation_id": f"{conversation_id}-x", "prompt_name": "nope"}
)
expect_problem(
    create_conversation.sync(client=client, body=bad_prompt), 422, ProblemCode.PROMPT_NOT_FOUND
)
anonymous = AuthenticatedClient(base_url=BASE_URL, token="not-a-key")
expect_problem(list_packs.sync(client=anonymous), 401, ProblemCode.UNAUTHORIZED)

current = get_conversation.sync(conversation_id, client=client)
assert isinstance(current, Conversation)
patched = update_conversation.sync(
    conversation_id,
    client=client,
    body=PatchConversation(metadata=metadata),
    if_match=f'"{current.version}"',
)
assert isinstance(patched, Conversation) and patched.metadata.to_dict() == {"k": "v"}

deleted = delete_conversation.sync_detailed(conversation_id, client=client)
assert deleted.status_code == 204
expect_problem(
    get_conversation.sync(conversation_id, client=client), 404, ProblemCode.CONVERSATION_NOT_FOUND
)

print(json.dumps({"session": "ok", **seen}))
