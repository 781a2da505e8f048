// Headless Chromium (Debian's, driven by playwright-core) loads a page from another origin
// that talks to Parley: a streaming send read incrementally with fetch(), then a replay of
// the run with EventSource, which must stop by itself (204) instead of reconnecting. The
// same page served from an origin Parley does not allow must be blocked by the browser.
// Prints one JSON line with what the pages saw; tests/clients/test_browser.py judges it.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const api = process.env.PARLEY_URL ?? "";
const allowedPort = Number(process.env.PAGE_PORT_ALLOWED);
const blockedPort = Number(process.env.PAGE_PORT_BLOCKED);
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

// What runs in the page (plain browser JavaScript, as a web developer would write it).
const PAGE = `<!doctype html><meta charset="utf-8"><title>Parley from another origin</title>
<script>
async function streamed(api, text) {
  const started = performance.now();
  const conv = await fetch(api + "/conversations", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Idempotency-Key": "page-" + Math.random()},
    body: JSON.stringify({pack_id: "general-assistant", prompt_name: "chat", user_id: "page"}),
  }).then((r) => r.json());
  const response = await fetch(api + "/conversations/" + conv.id + "/messages", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
    body: JSON.stringify({content: text}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true}).replaceAll("\\r\\n", "\\n");
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const f = {};
      for (const line of block.split("\\n")) {
        const at = line.indexOf(":");
        if (at > 0) f[line.slice(0, at)] = line.slice(at + 1).trim();
      }
      if (f.event) events.push({event: f.event, id: f.id, at: performance.now() - started,
                                data: JSON.parse(f.data)});
    }
  }
  return {conv: conv.id, runId: response.headers.get("X-Run-Id"), events};
}

function replay(api, conv, runId, settleMs) {
  return new Promise((resolve) => {
    const seen = {opens: 0, errors: 0, events: [], closedAt: null};
    const es = new EventSource(api + "/conversations/" + conv + "/runs/" + runId + "/events");
    const started = performance.now();
    es.onopen = () => { seen.opens += 1; };
    es.onerror = () => {
      seen.errors += 1;
      if (es.readyState === EventSource.CLOSED && seen.closedAt === null) {
        seen.closedAt = performance.now() - started;
        setTimeout(() => { seen.finalState = es.readyState; es.close(); resolve(seen); }, settleMs);
      }
    };
    for (const type of ["run.created", "message.created", "message.delta", "tool_call.created",
                        "tool_call.completed", "message.completed", "run.requires_action",
                        "run.completed", "run.failed", "run.cancelled", "run.snapshot"]) {
      es.addEventListener(type, (e) => seen.events.push({event: type, id: e.lastEventId}));
    }
    setTimeout(() => { seen.timedOut = true; seen.finalState = es.readyState; es.close();
                       resolve(seen); }, 15000);
  });
}

async function run(api, text) {
  const send = await streamed(api, text);
  const again = await replay(api, send.conv, send.runId, 2500);
  return {send, replay: again};
}

async function blocked(api) {
  try {
    await fetch(api + "/packs");
    return "not blocked";
  } catch (err) {
    return String(err);
  }
}
</script>`;

function serve(port: number): Promise<Server> {
  const server = createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(PAGE);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

const servers = [await serve(allowedPort), await serve(blockedPort)];
const profile = mkdtempSync(join(tmpdir(), "parley-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${allowedPort}/`);
  const allowed = await page.evaluate(
    ([base, text]) => (globalThis as any).run(base, text),
    [api, "one two three four five six seven eight"],
  );
  const other = await context.newPage();
  await other.goto(`http://127.0.0.1:${blockedPort}/`);
  const refused = await other.evaluate((base) => (globalThis as any).blocked(base), api);
  console.log(JSON.stringify({ browser: context.browser()?.version() ?? "", allowed, refused }));
} finally {
  await context.close();
  for (const server of servers) server.close();
  rmSync(profile, { recursive: true, force: true });
}
