// The message tree: "2 / 3" sibling arrows on a message (switching moves the head to the
// newest leaf under the chosen sibling), edit and regenerate (new siblings, as runs), fork,
// rollback, checkpoints and branches. Every control is shown only when the service has its
// operation (`has`).
import { $, el, status } from "./dom.js";
import { api, convPath, enc, has, shown } from "./http.js";
import { hooks, state } from "./state.js";

const msgPath = (id) => `${convPath(state.conv.id)}/messages/${enc(id)}`;
const report = (what) => (err) => status(`${what} refused: ${err.message}`);

// The newest leaf of the subtree under `id`: where the head goes when that sibling is chosen.
async function leafUnder(id) {
  let detail = await api("GET", msgPath(id));
  while (detail.children_ids.length) detail = await api("GET", msgPath(detail.children_ids.at(-1)));
  return detail.id;
}

export async function moveHead(messageId) {
  await api("PUT", `${convPath(state.conv.id)}/head`, { json: { message_id: messageId } });
  await hooks.openConversation(state.conv.id);
}

async function switchTo(siblingId) {
  await shown(async () => moveHead(await leafUnder(siblingId)), report("branch switch"));
}

function siblingArrows(d) {
  const all = [...d.sibling_ids];
  all.splice(d.sibling_index, 0, d.id);
  const at = d.sibling_index;
  return el("span", { class: "siblings", "data-testid": "siblings" },
    el("button", { type: "button", "data-testid": "sibling-prev", text: "‹", disabled: at === 0,
      onclick: () => switchTo(all[at - 1]) }),
    el("span", { "data-testid": "sibling-pos", text: ` ${at + 1} / ${d.sibling_count} ` }),
    el("button", { type: "button", "data-testid": "sibling-next", text: "›", disabled: at === all.length - 1,
      onclick: () => switchTo(all[at + 1]) }));
}

// Drop the shown messages from `node` on: a new sibling replaces them on the path.
function cutFrom(node) {
  while (node.nextSibling) node.nextSibling.remove();
  node.remove();
}

function editForm(node, m) {
  const text = el("textarea", { rows: 2, "data-testid": "edit-text" });
  text.value = typeof m.content === "string" ? m.content : "";
  const form = el("form", { class: "edit", "data-testid": "edit-form" },
    el("div", { class: "field", "data-field": "content" }, text, el("div", { class: "error" })),
    el("button", { type: "submit", "data-testid": "edit-save", text: "Save and resend" }),
    el("button", { type: "button", text: "Cancel", onclick: () => form.remove() }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    hooks.startRun(`${msgPath(m.id)}/edit`, { content: text.value }, { form, onAccepted: () => cutFrom(node) });
  });
  return form;
}

function actions(node, m) {
  const buttons = [];
  if (m.role === "user" && has("editMessage")) {
    buttons.push(el("button", { type: "button", "data-testid": "edit", text: "Edit",
      onclick: () => { if (!node.querySelector(".edit")) node.append(editForm(node, m)); } }));
  }
  if (m.role === "assistant" && has("regenerateReply")) {
    buttons.push(el("button", { type: "button", "data-testid": "regenerate", text: "Regenerate", onclick: () => {
      hooks.startRun(`${convPath(state.conv.id)}/regenerate`, { message_id: m.id }, { onAccepted: () => cutFrom(node) });
    } }));
  }
  if (has("rollbackConversation")) {
    buttons.push(el("button", { type: "button", "data-testid": "rollback-here", text: "Rollback here",
      onclick: () => shown(async () => {
        await api("POST", `${convPath(state.conv.id)}/rollback`, { json: { message_id: m.id } });
        await hooks.openConversation(state.conv.id);
      }, report("rollback")) }));
  }
  if (has("forkConversation")) {
    buttons.push(el("button", { type: "button", "data-testid": "fork-here", text: "Fork here",
      onclick: () => fork({ message_id: m.id }) }));
  }
  return buttons;
}

// Arrows and actions of one committed message (its detail says where it sits in the tree).
export async function decorateMessage(node, m) {
  const buttons = actions(node, m);
  const bar = el("div", { class: "tree-bar" }, ...buttons);
  node.append(bar);
  if (!has("getMessage")) return;
  const detail = await shown(() => api("GET", msgPath(m.id)), () => {});
  if (detail && detail.sibling_count > 1 && node.isConnected) bar.prepend(siblingArrows(detail));
}

async function fork(body) {
  const conv = await shown(() => api("POST", `${convPath(state.conv.id)}/fork`, { json: body }), report("fork"));
  if (!conv) return;
  $("filter-user").value = conv.user_id;
  await hooks.listConversations(false);
  await hooks.openConversation(conv.id);
  status(`forked into ${conv.id}`);
}

// --- the tree panel: branches and checkpoints of the open conversation ------------------

export async function showTreePanel() {
  const panel = $("tree-panel");
  panel.hidden = !(has("listBranches") || has("listCheckpoints"));
  $("branches-box").hidden = !has("listBranches");
  $("checkpoints-box").hidden = !has("listCheckpoints");
  $("checkpoint-form").hidden = !has("createCheckpoint");
  const forkedFrom = state.conv.forked_from;
  $("forked-from").textContent = forkedFrom ? `forked from ${forkedFrom.conversation_id}` : "";
  if (has("listBranches")) await listBranches();
  if (has("listCheckpoints")) await listCheckpoints();
}

async function listBranches() {
  const page = await shown(() => api("GET", `${convPath(state.conv.id)}/branches`), report("branches"));
  if (!page) return;
  $("branches").replaceChildren(...page.data.map((b) => el("li", {
    class: b.is_head ? "selected" : null, "data-leaf": b.head_message_id, "data-testid": "branch",
    onclick: () => (b.is_head || !has("setConversationHead") ? null : shown(() => moveHead(b.head_message_id), report("head"))),
  }, el("span", { text: `${b.is_head ? "● " : ""}${b.message_count} msgs · ` }),
  el("span", { class: "hint", text: b.preview.slice(0, 60) }))));
}

async function listCheckpoints() {
  const page = await shown(() => api("GET", `${convPath(state.conv.id)}/checkpoints?limit=20`), report("checkpoints"));
  if (!page) return;
  $("checkpoints").replaceChildren(...page.data.map((c) => el("li", { "data-checkpoint": c.id, "data-testid": "checkpoint" },
    el("span", { text: `${c.name || c.id} · ${c.kind} · ${c.message_count} msgs ` }),
    has("rollbackConversation") ? el("button", { type: "button", "data-testid": "rollback", text: "Rollback",
      onclick: () => shown(async () => {
        await api("POST", `${convPath(state.conv.id)}/rollback`, { json: { checkpoint_id: c.id } });
        await hooks.openConversation(state.conv.id);
      }, report("rollback")) }) : null,
    has("forkConversation") ? el("button", { type: "button", text: "Fork", onclick: () => fork({ checkpoint_id: c.id }) }) : null)));
}

$("checkpoint-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("checkpoint-name").value.trim();
  const made = await shown(() => api("POST", `${convPath(state.conv.id)}/checkpoints`,
    { json: name ? { name } : {} }), (err) => { $("checkpoint-error").textContent = err.message; });
  if (!made) return;
  $("checkpoint-error").textContent = "";
  $("checkpoint-name").value = "";
  await listCheckpoints();
});
