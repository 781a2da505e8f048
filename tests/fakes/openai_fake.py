"""A fake OpenAI Chat Completions server for service-level tests, behind MockTransport.

It records every request body and answers each call with the next scripted behaviour,
streamed in the real wire format (chat.completion.chunk objects, a usage chunk, [DONE]).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


def _chunk(delta: dict[str, Any], finish: str | None = None, model: str = "gpt-4o-mini") -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class Reply:
    """One scripted answer. `fail_after` > 0 breaks the stream after that many deltas."""

    text: str = "ok"
    status: int = 200
    fail_after: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: tuple[int, int] = (11, 7)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], fail: bool) -> None:
        self._chunks = chunks
        self._fail = fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._fail:
            raise httpx.RemoteProtocolError("peer closed connection mid-stream")


@dataclass
class FakeOpenAI:
    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.status != 200:
            return httpx.Response(
                reply.status,
                json={"error": {"message": f"scripted {reply.status}", "type": "server_error"}},
            )
        words = [w + " " for w in reply.text.split(" ")]
        words[-1] = words[-1].rstrip(" ")
        chunks = [_chunk({"role": "assistant", "content": ""})]
        for i, word in enumerate(words):
            if reply.fail_after and i >= reply.fail_after:
                return httpx.Response(
                    200,
                    headers={"content-type": "text/event-stream"},
                    stream=_Stream(chunks, fail=True),
                )
            chunks.append(_chunk({"content": word}))
        for i, call in enumerate(reply.tool_calls):
            chunks.append(
                _chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {
                                    "name": call["name"],
                                    "arguments": json.dumps(call["arguments"]),
                                },
                            }
                        ]
                    }
                )
            )
        chunks.append(_chunk({}, finish="tool_calls" if reply.tool_calls else "stop"))
        chunks.append(_usage(*reply.usage))
        chunks.append(b"data: [DONE]\n\n")
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Stream(chunks, fail=False)
        )
