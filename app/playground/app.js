// Parley playground: plain browser JavaScript modules against the service's own API (same
// origin, no build step). This one lists conversations, opens one, sends from the composer
// and wires the other modules together (state.js hooks).
import { $, el, status } from "./dom.js";
import { ApiError, api, convPath, KEY, loadOperations } from "./http.js";
import { clearAttachments, uploadAll } from "./attachments.js";
import { showContext } from "./context.js";
import { decorateCommitted, renderMessage } from "./messages.js";
import { loadPacks } from "./packs.js";
import { hooks, state } from "./state.js";
import { cancelRun, reattach, replayPending, startRun } from "./stream.js";
import { syncToolCards } from "./tools.js";
import { decorateMessage, showTreePanel } from "./tree.js";

const PAGE_SIZE = 10;

// --- API key -----------------------------------------------------------------------------

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  $("key").value = "";
  $("key-form").hidden = true;
  $("forget-key").hidden = false;
  start();
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.reload();
});

// --- conversations -----------------------------------------------------------------------

async function listConversations(more) {
  const user = $("filter-user").value.trim();
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (user) params.set("user_id", user);
  if (more && state.convCursor) params.set("cursor", state.convCursor);
  try {
    const page = await api("GET", `/conversations?${params}`);
    if (!more) $("conversations").replaceChildren();
    for (const c of page.data) {
      $("conversations").append(el("li", { "data-conv": c.id, onclick: () => openConversation(c.id) },
        el("strong", { text: `${c.pack_id} / ${c.prompt_name}` }), " ",
        el("span", { class: "hint", text: `${c.message_count} msgs · ${c.updated_at.slice(0, 19)}` }),
        el("div", { class: "hint", text: c.id })));
    }
    state.convCursor = page.next_cursor;
    $("more-convs").hidden = !page.next_cursor;
    status(`${$("conversations").children.length} conversation(s) listed`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    status(`listing failed: ${err.message}`);
  }
}

$("conv-filter").addEventListener("submit", (e) => { e.preventDefault(); listConversations(false); });
$("more-convs").addEventListener("click", () => listConversations(true));

async function openConversation(id) {
  const conv = await api("GET", convPath(id));
  state.conv = conv;
  for (const li of $("conversations").children) li.classList.toggle("selected", li.dataset.conv === id);
  $("chat").hidden = false;
  $("chat-title").textContent = `${conv.pack_id} / ${conv.prompt_name}`;
  $("chat-title").dataset.conv = conv.id;
  showMeta(conv);
  $("messages").replaceChildren();
  $("send-error").textContent = "";
  await loadMessages(false);
  await Promise.all([showTreePanel(), showContext()]);
  const head = [...$("messages").children].at(-1);
  if (conv.status === "requires_action" && head && head.message.run_id) await replayPending(head.message.run_id);
  $("chat").dataset.loaded = conv.id; // tests wait on it
}

function showMeta(conv) {
  const u = conv.usage || {};
  $("chat-meta").textContent = `${conv.id} · user ${conv.user_id} · ${conv.provider}/${conv.model} · `
    + `${u.total_tokens || 0} tokens · $${(u.cost_usd || 0).toFixed(6)}`;
}

async function loadMessages(older) {
  const params = new URLSearchParams({ limit: "50" });
  if (older && state.olderCursor) params.set("before", state.olderCursor);
  const page = await api("GET", `${convPath(state.conv.id)}/messages?${params}`);
  const nodes = page.data.map((m) => renderMessage(m, "completed"));
  if (older) $("messages").prepend(...nodes);
  else $("messages").append(...nodes);
  syncToolCards($("messages"));
  decorateCommitted($("messages"));
  state.olderCursor = page.next_cursor;
  $("older").hidden = !page.next_cursor;
}

$("older").addEventListener("click", () => loadMessages(true));

async function refreshMeta() {
  if (!state.conv) return;
  try { showMeta(await api("GET", convPath(state.conv.id))); } catch { /* shown on next open */ }
}

// --- the composer ------------------------------------------------------------------------

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!state.conv || state.run || $("chat").dataset.run === "sending") return;
  $("send-error").textContent = "";
  $("chat").dataset.run = "sending";
  $("send").disabled = true;
  const text = $("text").value;
  let body;
  try {
    const media = await uploadAll(state.conv.user_id);
    body = media.length ? { parts: [...(text ? [{ type: "text", text }] : []), ...media] } : { content: text };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    $("send-error").textContent = `upload refused: ${err.message}`;
    $("chat").dataset.run = "refused";
    $("send").disabled = false;
    return;
  }
  // cleared once the service accepted the message (a refusal keeps what was typed)
  await startRun(`${convPath(state.conv.id)}/messages`, body,
    { onAccepted: () => { $("text").value = ""; clearAttachments(); } });
});

$("stop").addEventListener("click", () => cancelRun());

// --- start -------------------------------------------------------------------------------

Object.assign(hooks, {
  openConversation,
  listConversations,
  startRun,
  decorateMessage,
  afterRun: async () => { await Promise.all([refreshMeta(), showTreePanel(), showContext()]); },
});

async function start() {
  try {
    await loadOperations();
    await loadPacks();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the key form is showing
    status(`cannot load packs: ${err.message}`);
    return;
  }
  $("key-form").hidden = true;
  $("forget-key").hidden = !sessionStorage.getItem(KEY);
  status("ready");
  await listConversations(false);
  document.body.dataset.ready = "true";
  await reattach();
}

start();
