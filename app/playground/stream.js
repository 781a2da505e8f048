// Runs over SSE: a send (or edit, regenerate, approval, tool result) starts a run whose events
// are applied to the page as they arrive; the live run (id, last event id, what it showed) is
// kept in sessionStorage so that a reload reattaches with Last-Event-ID.
import { $, el, status } from "./dom.js";
import { ApiError, api, call, convPath, enc } from "./http.js";
import { bubble, decorateCommitted, fillMessage, renderMessage } from "./messages.js";
import { showProblem } from "./packs.js";
import { hooks, state } from "./state.js";
import { showPending, toolCallDone } from "./tools.js";

const LIVE = "parley.live";
const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled", "run.requires_action"]);

function saveLive(live) {
  if (live) sessionStorage.setItem(LIVE, JSON.stringify(live));
  else sessionStorage.removeItem(LIVE);
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = { data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue; // comments: ": ping"
        const at = line.indexOf(":");
        const name = at < 0 ? line : line.slice(0, at);
        let value = at < 0 ? "" : line.slice(at + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") fields.data.push(value);
        else fields[name] = value;
      }
      if (fields.event && fields.data.length) onEvent(fields.event, fields.id, JSON.parse(fields.data.join("\n")));
    }
  }
}

function setRunning(running) {
  $("stop").hidden = !running;
  $("send").disabled = running;
}

function showCommitted(live, m) {
  live.messages[m.id] = { message: m, status: "completed" };
  fillMessage(bubble(m.id, m.role), m, "completed");
}

// Apply one event to the page and to the live record kept for a reload.
function applyEvent(live, event, id, data) {
  if (id) live.lastId = id;
  if (event === "run.created") live.run = data.run.id;
  else if (event === "message.created") {
    live.messages[data.message.id] = { message: data.message, status: "completed" };
    const node = bubble(data.message.id, data.message.role);
    fillMessage(node, data.message, data.message.role === "assistant" ? "streaming" : "completed");
  } else if (event === "message.delta") {
    const entry = live.messages[data.message_id]
      || (live.messages[data.message_id] = { message: { id: data.message_id, role: "assistant", content: "" }, status: "streaming" });
    entry.message.content = (entry.message.content || "") + data.delta;
    const text = bubble(data.message_id).querySelector(".text");
    text.textContent += data.delta;
  } else if (event === "message.completed") {
    showCommitted(live, data.message);
  } else if (event === "tool_call.completed") {
    toolCallDone(data.tool_call_id, data.is_error ? "error" : "done");
  } else if (event === "run.snapshot") {
    for (const m of data.messages || []) showCommitted(live, m);
  }
  if (TERMINAL.has(event)) {
    const outcome = event.slice(4);
    for (const node of $("messages").querySelectorAll('[data-status="streaming"]')) {
      node.dataset.status = outcome;
      if (outcome !== "completed") {
        node.querySelector(".usage")?.remove();
        node.append(el("span", { class: "usage", "data-testid": "usage", text: outcome }));
      }
    }
    // the run's messages are committed now (none are when it was cancelled or failed)
    if (outcome === "completed" || outcome === "requires_action") {
      decorateCommitted($("messages"), new Set(Object.keys(live.messages)));
    }
    if (outcome === "requires_action") showPending(data.pending_tool_calls || [], data.pending_approvals || []);
    const err = data.run && data.run.error;
    $("send-error").textContent = err ? `${outcome}: ${err.message || err.code || JSON.stringify(err)}` : "";
    $("chat").dataset.run = outcome;
    status(`run ${outcome}`);
    saveLive(null);
    return true;
  }
  saveLive(live);
  return false;
}

async function follow(live, response) {
  state.run = live;
  setRunning(true);
  $("chat").dataset.run = "streaming";
  let ended = false;
  try {
    await readEvents(response, (event, id, data) => { ended = applyEvent(live, event, id, data) || ended; });
  } catch (err) {
    status(`stream interrupted: ${err.message}`);
  } finally {
    state.run = null;
    setRunning(false);
  }
  if (ended) await hooks.afterRun();
}

// POST `body` to `path` (a run-starting operation) asking for SSE and follow the run; a
// refusal is shown in `form` next to the fields (or in the composer's error line);
// `onAccepted` runs once the service took the request.
export async function startRun(path, body, { form = $("composer"), onAccepted = () => {} } = {}) {
  $("send-error").textContent = "";
  $("chat").dataset.run = "sending";
  $("send").disabled = true;
  const response = await call("POST", path, { json: { ...body, stream: true }, extra: { Accept: "text/event-stream" } });
  if (!response.ok) {
    const err = new ApiError(response.status, await response.json().catch(() => null));
    showProblem(form, $("send-error"), err);
    $("chat").dataset.run = "refused";
    $("send").disabled = false;
    return false;
  }
  onAccepted();
  const live = { conv: state.conv.id, run: response.headers.get("X-Run-Id"), lastId: null, messages: {} };
  saveLive(live);
  await follow(live, response);
  return true;
}

export async function cancelRun() {
  const live = state.run;
  if (!live || !live.run) return;
  try {
    await api("POST", `${convPath(live.conv)}/runs/${enc(live.run)}/cancel`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    status(`cancel refused: ${err.message}`);
  }
}

// A conversation waiting for tool results or approvals: replay its last run's events (its
// terminal run.requires_action lists what is pending).
export async function replayPending(runId) {
  const response = await call("GET", `${convPath(state.conv.id)}/runs/${enc(runId)}/events`, { extra: { Accept: "text/event-stream" } });
  if (!response.ok || response.status === 204) return;
  await readEvents(response, (event, _id, data) => {
    if (event === "run.requires_action") showPending(data.pending_tool_calls || [], data.pending_approvals || []);
  });
}

// After a reload: show what the live run had produced, then follow it from its last event.
export async function reattach() {
  const raw = sessionStorage.getItem(LIVE);
  if (!raw) return;
  let live;
  try { live = JSON.parse(raw); } catch { saveLive(null); return; }
  if (!live.conv || !live.run) { saveLive(null); return; }
  try { await hooks.openConversation(live.conv); } catch { saveLive(null); return; }
  $("filter-user").value = state.conv.user_id;
  await hooks.listConversations(false);
  const shown = new Set([...$("messages").children].map((n) => n.dataset.id));
  for (const { message, status: s } of Object.values(live.messages || {})) {
    if (!shown.has(message.id)) $("messages").append(renderMessage(message, s));
  }
  live.messages = live.messages || {};
  const extra = { Accept: "text/event-stream" };
  if (live.lastId) extra["Last-Event-ID"] = live.lastId;
  const response = await call("GET", `${convPath(live.conv)}/runs/${enc(live.run)}/events`, { extra });
  if (response.status === 204 || !response.ok) {
    // finished before we came back (or gone): the committed history is the truth
    saveLive(null);
    await hooks.openConversation(live.conv);
    return;
  }
  status("reattached to the live run");
  $("chat").dataset.reattached = live.run;
  await follow(live, response);
}
