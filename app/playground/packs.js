// Packs and prompts: the form is built from the prompt's declared variables (types, enums,
// required, defaults); the server's validation errors are shown next to the fields.
import { $, el } from "./dom.js";
import { api, ApiError, enc } from "./http.js";
import { hooks, state } from "./state.js";

export async function loadPacks() {
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

export function clearErrors(form = $("prompt-form")) {
  for (const node of form.querySelectorAll(".error")) node.textContent = "";
}

// Put each error of a problem next to the field its `loc` names; the rest go to `fallback`.
export function showProblem(form, fallback, err) {
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
    await hooks.listConversations(false);
    await hooks.openConversation(conv.id);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showProblem($("prompt-form"), $("form-error"), err);
  }
});
