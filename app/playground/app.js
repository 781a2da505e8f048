// Parley playground: plain browser JavaScript against the service's own API (same origin).
// The API key (PARLEY_AUTH=keys) and the live run are kept in sessionStorage: this tab only.
"use strict";

const KEY = "parley.key";
const LIVE = "parley.live";
const PAGE_SIZE = 10;
const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled", "run.requires_action"]);
const MEDIA_KINDS = new Set(["image", "audio", "video", "document"]);

const $ = (id) => document.getElementById(id);
const state = { conv: null, convCursor: null, olderCursor: null, attachments: [], run: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function status(text) { $("status").textContent = text; }

// --- HTTP --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function call(method, path, { json, body, type, extra } = {}) {
  const init = { method, headers: headers(extra) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = type || "application/octet-stream";
  }
  const response = await fetch(path, init);
  if (response.status === 401) showKeyForm("this service needs an API key");
  return response;
}

async function api(method, path, options) {
  const response = await call(method, path, options);
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response.status === 204 ? null : response.json();
}

const enc = encodeURIComponent;
const convPath = (id) => `/conversations/${enc(id)}`;

// --- API key -----------------------------------------------------------------------------

function showKeyForm(why) {
  $("key-form").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY);
  status(why);
}

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

// --- packs and the prompt form -----------------------------------------------------------

async function loadPacks() {
  const list = $("packs");
  list.replaceChildren();
  let cursor = null;
  do {
    const page = await api("GET", `/packs?limit=100${cursor ? `&cursor=${enc(cursor)}` : ""}`);
    for (const pack of page.data) {
      list.append(el("li", { "data-pack": pack.id, onclick: () => openPack(pack.id) },
        el("strong", { text: pack.name || pack.id }), " ",
        el("span", { class: "hint", text: `${pack.id} ${pack.version} · ${pack.prompts.join(", ")}` })));
    }
    cursor = page.next_cursor;
  } while (cursor);
}

async function openPack(packId) {
  for (const li of $("packs").children) li.classList.toggle("selected", li.dataset.pack === packId);
  const pack = await api("GET", `/packs/${enc(packId)}`);
  state.pack = pack;
  $("prompt-form-box").hidden = false;
  $("prompt-title").textContent = `${pack.name || pack.id} (${pack.version})`;
  const select = $("prompt-name");
  select.replaceChildren(...Object.entries(pack.prompts).map(([name, p]) =>
    el("option", { value: name, text: p.name ? `${name}: ${p.name}` : name })));
  select.onchange = () => buildVariables();
  buildVariables();
}

function buildVariables() {
  const prompt = state.pack.prompts[$("prompt-name").value];
  $("prompt-description").textContent = prompt.description || "";
  const box = $("variables");
  box.replaceChildren(el("legend", { text: "Variables" }));
  clearErrors();
  const vars = prompt.variables || [];
  if (!vars.length) box.append(el("p", { class: "hint", text: "This prompt declares no variables." }));
  for (const v of vars) box.append(variableField(v));
}

function variableField(v) {
  const rules = v.validation || {};
  const id = `var-${v.name}`;
  const initial = v.default === undefined || v.default === null ? ""
    : typeof v.default === "object" ? JSON.stringify(v.default) : String(v.default);
  let input;
  if (Array.isArray(rules.enum) || v.type === "boolean") {
    const options = Array.isArray(rules.enum) ? rules.enum : [true, false];
    input = el("select", { id }, v.required ? null : el("option", { value: "", text: "(not set)" }),
      ...options.map((o) => el("option", { value: JSON.stringify(o), text: String(o) })));
    input.value = v.default === undefined || v.default === null ? "" : JSON.stringify(v.default);
  } else if (v.type === "object" || v.type === "array") {
    input = el("textarea", { id, rows: 2, placeholder: v.example ? JSON.stringify(v.example) : "JSON" });
    input.value = initial;
  } else {
    input = el("input", { id, inputmode: v.type === "number" ? "decimal" : null,
      placeholder: v.example === undefined ? null : String(v.example) });
    input.value = initial;
  }
  input.dataset.type = v.type || "string";
  input.dataset.name = v.name;
  const limits = [];
  if (rules.min_length !== undefined) limits.push(`≥ ${rules.min_length} chars`);
  if (rules.max_length !== undefined) limits.push(`≤ ${rules.max_length} chars`);
  if (rules.minimum !== undefined) limits.push(`≥ ${rules.minimum}`);
  if (rules.maximum !== undefined) limits.push(`≤ ${rules.maximum}`);
  if (rules.pattern) limits.push(`pattern ${rules.pattern}`);
  return el("div", { class: "field", "data-field": `variables.${v.name}`, "data-testid": `field-${v.name}` },
    el("label", { for: id }, `${v.name} `, el("span", { class: "hint", text: v.type || "string" }),
      v.required ? el("span", { class: "req", text: " *" }) : null),
    input,
    el("div", { class: "hint", text: [v.description, limits.join(", ")].filter(Boolean).join(" · ") }),
    el("div", { class: "error", "data-testid": `error-${v.name}` }));
}

function variableValue(input) {
  const raw = input.value;
  if (raw === "") return undefined;
  if (input.tagName === "SELECT") return JSON.parse(raw);
  if (input.dataset.type === "number" || input.dataset.type === "integer") {
    const n = Number(raw);
    return raw.trim() !== "" && Number.isFinite(n) ? n : raw; // the server explains a non-number
  }
  if (input.dataset.type === "object" || input.dataset.type === "array") {
    try { return JSON.parse(raw); } catch { return raw; }
  }
  return raw;
}

function clearErrors(form = $("prompt-form")) {
  for (const node of form.querySelectorAll(".error")) node.textContent = "";
}

// Put each error of a problem next to the field its `loc` names; the rest go to `fallback`.
function showProblem(form, fallback, err) {
  const errors = (err.problem && err.problem.errors) || [];
  const unplaced = [];
  for (const e of errors) {
    const loc = (e.loc || []).filter((p) => p !== "body");
    let field = null;
    for (let n = loc.length; n > 0 && !field; n -= 1) {
      field = form.querySelector(`[data-field="${CSS.escape(loc.slice(0, n).join("."))}"] .error`);
    }
    if (field) field.textContent += (field.textContent ? "\n" : "") + e.msg;
    else unplaced.push(`${loc.join(".")}: ${e.msg}`);
  }
  const code = err.problem.code ? ` (${err.problem.code})` : "";
  fallback.textContent = errors.length && !unplaced.length ? `${err.message}${code}`
    : [`${err.message}${code}`, ...unplaced].join("\n");
}

$("prompt-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearErrors();
  const variables = {};
  for (const input of $("variables").querySelectorAll("[data-name]")) {
    const value = variableValue(input);
    if (value !== undefined) variables[input.dataset.name] = value;
  }
  const body = { pack_id: state.pack.id, prompt_name: $("prompt-name").value, variables };
  const user = $("new-user-id").value.trim();
  if (user) body.user_id = user;
  try {
    const conv = await api("POST", "/conversations", { json: body });
    $("filter-user").value = conv.user_id;
    await listConversations(false);
    await openConversation(conv.id);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showProblem($("prompt-form"), $("form-error"), err);
  }
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
  state.olderCursor = page.next_cursor;
  $("older").hidden = !page.next_cursor;
}

$("older").addEventListener("click", () => loadMessages(true));

// --- messages ----------------------------------------------------------------------------

function usageText(m) {
  const u = m.usage || {};
  return `${u.input_tokens || 0} in · ${u.output_tokens || 0} out · $${(m.cost_usd || 0).toFixed(6)}`
    + (m.finish_reason ? ` · ${m.finish_reason}` : "");
}

function renderMessage(m, status) {
  const node = el("li", { class: `msg ${m.role}`, "data-id": m.id, "data-role": m.role,
    "data-status": status, "data-testid": m.role === "assistant" ? "reply" : `msg-${m.role}` });
  fillMessage(node, m, status);
  return node;
}

function fillMessage(node, m, status) {
  node.dataset.status = status;
  const text = el("span", { class: "text", text: textOf(m) });
  const children = [el("span", { class: "role", text: m.role + (m.name ? ` (${m.name})` : "") }), text];
  for (const part of m.parts || []) if (part.media) children.push(mediaView(part));
  for (const call of m.tool_calls || []) {
    children.push(el("div", { class: "hint", text: `tool call ${call.name}(${JSON.stringify(call.arguments)})` }));
  }
  if (m.role === "assistant") children.push(el("span", { class: "usage", "data-testid": "usage", text: usageText(m) }));
  node.replaceChildren(...children);
}

function textOf(m) {
  if (m.parts && m.parts.length) return m.parts.filter((p) => p.type === "text").map((p) => p.text).join("\n");
  return typeof m.content === "string" ? m.content : "";
}

function mediaView(part) {
  const media = part.media;
  const label = `${part.type}${media.mime_type ? ` ${media.mime_type}` : ""}`;
  const holder = el("div", { class: "media", "data-testid": "media" });
  const isImage = part.type === "image";
  const show = (url) => holder.replaceChildren(isImage
    ? el("img", { src: url, alt: media.caption || label })
    : el("a", { href: url, download: "", text: label }));
  if (media.base64) show(`data:${media.mime_type || "application/octet-stream"};base64,${media.base64}`);
  else if (media.url) holder.append(el("a", { href: media.url, rel: "noreferrer", text: `${label} (url)` }));
  else if (media.media_id) {
    holder.textContent = label;
    // media downloads need the key header, so fetch and show the bytes as a blob: URL
    call("GET", `/media/${enc(media.media_id)}`).then(async (r) => {
      if (r.ok) show(URL.createObjectURL(await r.blob()));
    });
  }
  return holder;
}

function bubble(id, role = "assistant") {
  let node = $("messages").querySelector(`[data-id="${CSS.escape(id)}"]`);
  if (!node) {
    node = renderMessage({ id, role, content: "", parts: [] }, "streaming");
    $("messages").append(node);
  }
  return node;
}

// --- streaming ---------------------------------------------------------------------------

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
    live.messages[data.message.id] = { message: data.message, status: "completed" };
    fillMessage(bubble(data.message.id, data.message.role), data.message, "completed");
  } else if (event === "run.snapshot") {
    for (const m of data.messages || []) {
      live.messages[m.id] = { message: m, status: "completed" };
      fillMessage(bubble(m.id, m.role), m, "completed");
    }
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
  if (ended) refreshMeta();
}

async function refreshMeta() {
  if (!state.conv) return;
  try { showMeta(await api("GET", convPath(state.conv.id))); } catch { /* shown on next open */ }
}

async function uploadAll(userId) {
  const parts = [];
  for (const a of state.attachments) {
    const query = userId ? `?user_id=${enc(userId)}` : "";
    const media = await api("POST", `/media${query}`, { body: a.file, type: a.file.type || "application/octet-stream" });
    const kind = MEDIA_KINDS.has(media.kind) ? media.kind : "file";
    parts.push({ type: kind, media: { media_id: media.media_id } });
  }
  return parts;
}

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
    body = media.length
      ? { parts: [...(text ? [{ type: "text", text }] : []), ...media], stream: true }
      : { content: text, stream: true };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    $("send-error").textContent = `upload refused: ${err.message}`;
    $("chat").dataset.run = "refused";
    $("send").disabled = false;
    return;
  }
  const response = await call("POST", `${convPath(state.conv.id)}/messages`,
    { json: body, extra: { Accept: "text/event-stream" } });
  if (!response.ok) {
    const err = new ApiError(response.status, await response.json().catch(() => null));
    showProblem($("composer"), $("send-error"), err);
    $("chat").dataset.run = "refused";
    $("send").disabled = false;
    return;
  }
  $("text").value = "";
  clearAttachments();
  const live = { conv: state.conv.id, run: response.headers.get("X-Run-Id"), lastId: null, messages: {} };
  saveLive(live);
  await follow(live, response);
});

$("stop").addEventListener("click", async () => {
  const live = state.run;
  if (!live || !live.run) return;
  try {
    await api("POST", `${convPath(live.conv)}/runs/${enc(live.run)}/cancel`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    status(`cancel refused: ${err.message}`);
  }
});

// After a reload: show what the live run had produced, then follow it from its last event.
async function reattach() {
  const raw = sessionStorage.getItem(LIVE);
  if (!raw) return;
  let live;
  try { live = JSON.parse(raw); } catch { saveLive(null); return; }
  if (!live.conv || !live.run) { saveLive(null); return; }
  try { await openConversation(live.conv); } catch { saveLive(null); return; }
  $("filter-user").value = state.conv.user_id;
  await listConversations(false);
  const shown = new Set([...$("messages").children].map((n) => n.dataset.id));
  for (const { message, status } of Object.values(live.messages || {})) {
    if (!shown.has(message.id)) $("messages").append(renderMessage(message, status));
  }
  live.messages = live.messages || {};
  const extra = { Accept: "text/event-stream" };
  if (live.lastId) extra["Last-Event-ID"] = live.lastId;
  const response = await call("GET", `${convPath(live.conv)}/runs/${enc(live.run)}/events`, { extra });
  if (response.status === 204 || !response.ok) {
    // finished before we came back (or gone): the committed history is the truth
    saveLive(null);
    await openConversation(live.conv);
    return;
  }
  status("reattached to the live run");
  $("chat").dataset.reattached = live.run;
  await follow(live, response);
}

// --- attachments -------------------------------------------------------------------------

function addAttachment(file) {
  const url = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
  const entry = { file, url };
  state.attachments.push(entry);
  const figure = el("figure", { "data-testid": "attachment" },
    url ? el("img", { src: url, alt: file.name, "data-testid": "preview" }) : null,
    el("figcaption", { text: `${file.name} (${file.size} B) ` },
      el("button", { type: "button", title: "remove", text: "×", onclick: () => {
        state.attachments = state.attachments.filter((a) => a !== entry);
        if (url) URL.revokeObjectURL(url);
        figure.remove();
      } })));
  $("attachments").append(figure);
}

function clearAttachments() {
  for (const a of state.attachments) if (a.url) URL.revokeObjectURL(a.url);
  state.attachments = [];
  $("attachments").replaceChildren();
  $("file").value = "";
}

$("file").addEventListener("change", () => { for (const f of $("file").files) addAttachment(f); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  for (const f of e.dataTransfer.files) addAttachment(f);
});

// --- start -------------------------------------------------------------------------------

async function start() {
  try {
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
