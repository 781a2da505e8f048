// The context panel: what the next turn would send (GET .../context, a dry run): the token
// budget by section as a bar against the input budget, how many committed messages are
// included and dropped, and the summary in use (with strategy summarize, Compact writes one).
import { $, el } from "./dom.js";
import { api, convPath, has, shown } from "./http.js";
import { state } from "./state.js";

// `media` is left out: it is counted inside history and pending already.
const SECTIONS = ["system", "context_items", "summary", "history", "pending", "tools"];

let latest = 0; // only the newest request's answer is shown (an older one may arrive later)

export async function showContext() {
  const panel = $("context-panel");
  panel.hidden = !has("getConversationContext");
  if (panel.hidden || !state.conv) return;
  const mine = ++latest;
  const preview = await shown(() => api("GET", `${convPath(state.conv.id)}/context`),
    (err) => { $("context-numbers").textContent = `context refused: ${err.message}`; });
  if (!preview || mine !== latest) return;
  const b = preview.budget;
  const scale = Math.max(b.input_budget, b.total, 1);
  $("context-bar").replaceChildren(...SECTIONS.filter((s) => b[s] > 0).map((s) => el("span", {
    class: `seg seg-${s}`, style: null, title: `${s}: ${b[s]} tokens`, "data-section": s,
  })));
  for (const seg of $("context-bar").children) seg.style.width = `${(100 * b[seg.dataset.section]) / scale}%`;
  $("context-numbers").replaceChildren(...SECTIONS.map((s) => el("li", { "data-testid": `ctx-${s}`, "data-tokens": String(b[s]) },
    el("span", { class: `swatch seg-${s}` }), `${s.replace("_", " ")}: ${b[s]}`)),
  el("li", { "data-testid": "ctx-total", "data-tokens": String(b.total), text: `total ${b.total} of ${b.input_budget} (max input ${b.max_input_tokens}, ${b.reserved_output} reserved for the reply)` }));
  $("context-messages").textContent = `${preview.strategy}: ${preview.included_message_ids.length} message(s) included, ${preview.dropped} dropped`;
  $("context-messages").dataset.included = String(preview.included_message_ids.length);
  $("context-messages").dataset.dropped = String(preview.dropped);
  const summary = preview.summary;
  $("context-summary").textContent = summary
    ? `summary in use (${summary.tokens} tokens, up to message ${summary.covers_message_id}): ${summary.text}`
    : "no summary in use";
  if (preview.summary_pending) $("context-summary").textContent += " · the next turn writes a new summary first";
  $("compact").hidden = !(has("compactConversation") && preview.strategy === "summarize");
  panel.dataset.renders = String(Number(panel.dataset.renders || 0) + 1); // tests wait on it
}

$("context-refresh").addEventListener("click", () => showContext());

// strategy summarize: summarize everything up to the head now (POST .../compact)
$("compact").addEventListener("click", async () => {
  const made = await shown(() => api("POST", `${convPath(state.conv.id)}/compact`),
    (err) => { $("context-summary").textContent = `compact refused: ${err.message}`; });
  if (made) await showContext();
});
