// The scripted session of tests/clients/ with the TypeScript client generated from the
// committed document (openapi-typescript types + openapi-fetch). Same steps as
// tests/clients/python/session.py. Prints one JSON line with what it saw; any failed
// expectation throws (non-zero exit).
import assert from "node:assert/strict";
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type Problem = components["schemas"]["Problem"];
// One SSE event as the document describes it: the text of its `event:`, `id:` and `data:`
// lines; `data` is a JSON document of the payload schema the event names.
type StreamEvent = components["schemas"]["RunStreamEvent"];
type Schemas = components["schemas"];
type Conversation = components["schemas"]["Conversation"];

const baseUrl = process.env.PARLEY_URL ?? "";
const key = process.env.PARLEY_KEY ?? "";
// `${string}/${string}json`: a parsed body is the JSON form of a response (JSON or problem+json; the
// streaming form of a send is read with `parseAs: "stream"`).
const client = createClient<paths, `${string}/${string}json`>({
  baseUrl,
  headers: { Authorization: `Bearer ${key}` },
});
const seen: Record<string, unknown> = {};

function expectProblem(error: Problem | undefined, status: number, code: Problem["code"]): void {
  assert.ok(error, `expected a ${status} problem`);
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  seen[String(status)] = error.code;
}

async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields: Record<string, string> = {};
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const at = line.indexOf(":");
        fields[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, "");
      }
      if (fields.event) {
        yield { event: fields.event, id: fields.id, data: fields.data } as StreamEvent;
      }
    }
  }
}

const packs = await client.GET("/packs");
assert.ok(packs.data?.data.some((p) => p.id === "general-assistant"));
const pack = await client.GET("/packs/{pack_id}", { params: { path: { pack_id: "general-assistant" } } });
assert.ok(pack.data && "chat" in pack.data.prompts);

const conversationId = `ts-${Date.now()}`;
const createBody = {
  pack_id: "general-assistant",
  prompt_name: "chat",
  user_id: "client-session",
  conversation_id: conversationId,
};
const created = await client.POST("/conversations", { body: createBody });
assert.equal(created.response.status, 201);
const conv: Conversation = created.data!;
assert.equal(conv.id, conversationId);
const etag = new RegExp(`^"${conv.version}\\.[0-9a-f]{12}"$`); // "<version>.<incarnation>"
assert.match(created.response.headers.get("ETag") ?? "", etag);
const path = { conversation_id: conversationId };

for (const text of ["hello", "second"]) {
  const turn = await client.POST("/conversations/{conversation_id}/messages", {
    params: { path },
    body: { content: text },
  });
  assert.equal(turn.data?.reply.content, `echo: ${text}`);
  assert.equal(turn.data?.status, "completed");
  assert.equal(turn.data?.finish_reason, "stop");
}

const streamed = await client.POST("/conversations/{conversation_id}/messages", {
  params: { path },
  body: { content: "stream me please", stream: true },
  parseAs: "stream",
});
assert.equal(streamed.response.status, 200);
assert.match(streamed.response.headers.get("content-type") ?? "", /^text\/event-stream/);
const deltas: string[] = [];
const ids: number[] = [];
let terminal: Schemas["RunCompletedData"] | undefined;
let lastEvent = "";
for await (const event of sseEvents(streamed.response.body!)) {
  ids.push(Number(event.id));
  lastEvent = event.event;
  if (event.event === "message.delta") {
    deltas.push((JSON.parse(event.data) as Schemas["MessageDeltaData"]).delta);
  }
  if (event.event === "run.completed") terminal = JSON.parse(event.data) as Schemas["RunCompletedData"];
}
assert.ok(terminal && lastEvent === "run.completed", "the stream ends with run.completed");
assert.equal(deltas.join(""), "echo: stream me please");
assert.deepEqual(ids, ids.map((_, i) => i + 1));
const runId = terminal.run.id;
seen.deltas = deltas.length;

const run = await client.GET("/conversations/{conversation_id}/runs/{run_id}", {
  params: { path: { ...path, run_id: runId } },
});
assert.equal(run.data?.status, "completed");

const history = await client.GET("/conversations/{conversation_id}/messages", {
  params: { path, query: { limit: 50 } },
});
const messages = history.data!.data;
assert.deepEqual(
  messages.map((m) => m.role),
  ["user", "assistant", "user", "assistant", "user", "assistant"],
);
const one = await client.GET("/conversations/{conversation_id}/messages/{message_id}", {
  params: { path: { ...path, message_id: messages[0].id } },
});
assert.deepEqual(one.data?.children_ids, [messages[1].id]);

const missing = await client.GET("/conversations/{conversation_id}", {
  params: { path: { conversation_id: "no-such-conversation" } },
});
expectProblem(missing.error, 404, "conversation_not_found");
const again = await client.POST("/conversations", { body: createBody });
expectProblem(again.error, 409, "conversation_exists");
const stale = await client.PATCH("/conversations/{conversation_id}", {
  params: { path, header: { "If-Match": '"999"' } },
  body: { metadata: { k: "v" } },
});
expectProblem(stale.error, 412, "precondition_failed");
const badPrompt = await client.POST("/conversations", {
  body: { ...createBody, conversation_id: `${conversationId}-x`, prompt_name: "no-such-prompt" },
});
expectProblem(badPrompt.error, 422, "prompt_not_found");
const anonymous = await createClient<paths, `${string}/${string}json`>({ baseUrl }).GET("/packs");
expectProblem(anonymous.error, 401, "unauthorized");

const current = await client.GET("/conversations/{conversation_id}", { params: { path } });
const patched = await client.PATCH("/conversations/{conversation_id}", {
  params: { path, header: { "If-Match": `"${current.data!.version}"` } },
  body: { metadata: { k: "v" } },
});
assert.deepEqual(patched.data?.metadata, { k: "v" });

const deleted = await client.DELETE("/conversations/{conversation_id}", { params: { path } });
assert.equal(deleted.response.status, 204);
const gone = await client.GET("/conversations/{conversation_id}", { params: { path } });
expectProblem(gone.error, 404, "conversation_not_found");

console.log(JSON.stringify({ session: "ok", ...seen }));
