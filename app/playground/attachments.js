// Attachments: a file picker or drag and drop onto the composer, a preview before sending;
// on send each file is uploaded (POST /media) and becomes a media part of the message.
import { $, el } from "./dom.js";
import { api, enc } from "./http.js";
import { state } from "./state.js";

const MEDIA_KINDS = new Set(["image", "audio", "video", "document"]);

export async function uploadAll(userId) {
  const parts = [];
  for (const a of state.attachments) {
    const query = userId ? `?user_id=${enc(userId)}` : "";
    const media = await api("POST", `/media${query}`, { body: a.file, type: a.file.type || "application/octet-stream" });
    const kind = MEDIA_KINDS.has(media.kind) ? media.kind : "file";
    parts.push({ type: kind, media: { media_id: media.media_id } });
  }
  return parts;
}

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

export function clearAttachments() {
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
