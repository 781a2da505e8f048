// Tool calls as cards: each call of an assistant message is a card that goes from requested
// to done (or error) when its result arrives. A paused run's calls get their controls: a
// server tool needing consent is approved, rejected (with a reason) or approved with edited
// arguments (POST .../tool-approvals); a client tool is answered from a form
// (POST .../tool-results). Both continue the run over SSE.
import { el } from "./dom.js";
import { convPath, has } from "./http.js";
import { hooks, state } from "./state.js";

const cardOf = (callId) => document.querySelector(`.tool-card[data-call-id="${CSS.escape(callId)}"]`);

export function toolCallCard(c) {
  return el("div", { class: "tool-card", "data-call-id": c.id, "data-state": "requested", "data-testid": "tool-card" },
    el("div", { class: "tool-head" }, el("strong", { text: c.name }), " ",
      el("span", { class: "tool-state", "data-testid": "tool-state", text: "requested" })),
    el("pre", { class: "tool-args", text: JSON.stringify(c.arguments, null, 1) }),
    el("div", { class: "tool-actions" }));
}

export function toolResultCard(m) {
  const failed = Boolean(m.metadata && m.metadata.is_error);
  toolCallDone(m.tool_call_id, failed ? "error" : "done");
  return el("div", { class: "hint", "data-testid": "tool-result",
    text: `result of ${m.tool_call_id}${failed ? " (error)" : ""}` });
}

export function toolCallDone(callId, outcome) {
  const card = callId && cardOf(callId);
  if (!card) return;
  card.dataset.state = outcome;
  card.querySelector(".tool-state").textContent = outcome;
  card.querySelector(".tool-actions").replaceChildren();
}

// History shown at once: mark the calls whose tool message is on the page.
export function syncToolCards(list) {
  for (const node of list.querySelectorAll(".msg.tool")) {
    const m = node.message;
    if (m && m.tool_call_id) toolCallDone(m.tool_call_id, m.metadata && m.metadata.is_error ? "error" : "done");
  }
}

function waiting(callId, label, actions) {
  const card = cardOf(callId);
  if (!card) return;
  card.dataset.state = "pending";
  card.querySelector(".tool-state").textContent = label;
  card.querySelector(".tool-actions").replaceChildren(...actions);
}

function parseOr(text) {
  try { return JSON.parse(text); } catch { return text; }
}

function decide(decision) {
  return hooks.startRun(`${convPath(state.conv.id)}/tool-approvals`, { decisions: [decision] });
}

function approvalControls(p) {
  const args = el("textarea", { rows: 3, "data-testid": "approval-args" });
  args.value = JSON.stringify(p.arguments, null, 1);
  const reason = el("input", { placeholder: "reason (for a rejection)", "data-testid": "reject-reason" });
  const error = el("div", { class: "error", "data-testid": "approval-error" });
  const approve = () => {
    let edited;
    try { edited = JSON.parse(args.value); } catch { error.textContent = "arguments: not JSON"; return; }
    const same = JSON.stringify(edited) === JSON.stringify(p.arguments);
    decide({ tool_call_id: p.tool_call_id, approve: true, ...(same ? {} : { arguments: edited }) });
  };
  return [
    el("p", { class: "hint", text: p.message || "This call needs approval." }),
    el("label", { text: "Arguments " }, args),
    el("div", { class: "row" },
      el("button", { type: "button", "data-testid": "approve", text: "Approve", onclick: approve }),
      reason,
      el("button", { type: "button", "data-testid": "reject", text: "Reject",
        onclick: () => decide({ tool_call_id: p.tool_call_id, approve: false, reason: reason.value || null }) })),
    error,
  ];
}

function clientToolForm(c) {
  const output = el("textarea", { rows: 2, placeholder: "output (JSON or text)", "data-testid": "tool-output" });
  const isError = el("input", { type: "checkbox", "data-testid": "tool-is-error" });
  const form = el("form", { class: "client-tool", "data-testid": "client-tool-form" },
    el("div", { class: "field", "data-field": "results" }, el("label", { text: "Your tool's output" }, output),
      el("div", { class: "error" })),
    el("label", {}, isError, " is an error"), " ",
    el("button", { type: "submit", "data-testid": "send-tool-result", text: "Send result" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const result = { tool_call_id: c.id, output: parseOr(output.value), is_error: isError.checked };
    hooks.startRun(`${convPath(state.conv.id)}/tool-results`, { results: [result] }, { form });
  });
  return [form];
}

// run.requires_action: give each waiting call its controls (only those the API offers).
export function showPending(calls, approvals) {
  if (has("submitToolApprovals")) for (const p of approvals) waiting(p.tool_call_id, "waiting for approval", approvalControls(p));
  if (has("submitToolResults")) for (const c of calls) waiting(c.id, "waiting for your result", clientToolForm(c));
}
