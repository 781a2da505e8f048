// How a message is shown: role, text, media parts (previews fetched with the key), tool
// calls as cards, usage and cost. Once committed, a message gets the message tree's arrows
// and actions through `hooks.decorateMessage`.
import { $, el } from "./dom.js";
import { call, enc } from "./http.js";
import { hooks } from "./state.js";
import { toolCallCard, toolResultCard } from "./tools.js";

function usageText(m) {
  const u = m.usage || {};
  return `${u.input_tokens || 0} in · ${u.output_tokens || 0} out · $${(m.cost_usd || 0).toFixed(6)}`
    + (m.finish_reason ? ` · ${m.finish_reason}` : "");
}

export function renderMessage(m, status) {
  const node = el("li", { class: `msg ${m.role}`, "data-id": m.id, "data-role": m.role,
    "data-status": status, "data-testid": m.role === "assistant" ? "reply" : `msg-${m.role}` });
  fillMessage(node, m, status);
  return node;
}

export function fillMessage(node, m, status) {
  node.dataset.status = status;
  node.message = m;
  const text = el("span", { class: "text", text: textOf(m) });
  const children = [el("span", { class: "role", text: m.role + (m.name ? ` (${m.name})` : "") }), text];
  for (const part of m.parts || []) if (part.media) children.push(mediaView(part));
  for (const c of m.tool_calls || []) children.push(toolCallCard(c));
  if (m.role === "tool") children.push(toolResultCard(m));
  if (m.role === "assistant") children.push(el("span", { class: "usage", "data-testid": "usage", text: usageText(m) }));
  node.replaceChildren(...children);
}

// Committed messages get the tree's arrows and actions (once: a refill drops them).
export function decorateCommitted(list, ids = null) {
  for (const node of list.querySelectorAll(".msg")) {
    if (ids && !ids.has(node.dataset.id)) continue;
    if (node.message && node.message.conversation_id && !node.querySelector(".tree-bar")) {
      hooks.decorateMessage(node, node.message);
    }
  }
}

export function textOf(m) {
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

export function bubble(id, role = "assistant") {
  let node = $("messages").querySelector(`[data-id="${CSS.escape(id)}"]`);
  if (!node) {
    node = renderMessage({ id, role, content: "", parts: [] }, "streaming");
    $("messages").append(node);
  }
  return node;
}
