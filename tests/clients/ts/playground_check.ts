// Headless Chromium (Debian's, driven by playwright-core) uses GET /playground like a person
// would: the prompt form (server errors next to the fields, then a conversation), the
// conversation list with paging, a streamed reply (DOM updates counted while it streams),
// a reload in the middle of a stream (the page reattaches with Last-Event-ID), stop, and an
// image attached with the file input and by drag and drop. A screenshot of each step goes
// to SHOTS. Prints one JSON line; tests/clients/test_playground.py judges it.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

const api = process.env.PARLEY_URL ?? "";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = process.env.SHOTS ?? join(tmpdir(), "playground-shots");
const image = process.env.IMAGE ?? "";
const long = process.env.LONG_TEXT ?? "";
mkdirSync(shots, { recursive: true });

const result: Record<string, any> = { steps: [], console: [] };
let step = 0;
async function shot(page: Page, name: string): Promise<void> {
  step += 1;
  const file = join(shots, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.steps.push(file);
}

const lastReply = (page: Page) => page.locator('[data-testid="reply"]').last();

async function waitRun(page: Page, outcome: string): Promise<void> {
  await page.waitForFunction((o) => document.getElementById("chat")?.dataset.run === o, outcome,
    { timeout: 30000 });
}

// Count the changes of the last reply's text while the run streams (in the page itself).
async function watchReply(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = globalThis as any;
    w.__updates = [];
    const list = document.getElementById("messages")!;
    const observer = new MutationObserver(() => {
      const replies = list.querySelectorAll('[data-testid="reply"]');
      const last = replies[replies.length - 1] as HTMLElement | undefined;
      if (!last) return;
      const text = last.querySelector(".text")?.textContent ?? "";
      const seen = w.__updates;
      if (!seen.length || seen[seen.length - 1].text !== text || seen[seen.length - 1].status !== last.dataset.status) {
        seen.push({ text, status: last.dataset.status, at: performance.now() });
      }
    });
    observer.observe(list, { childList: true, subtree: true, characterData: true, attributes: true });
  });
}

async function send(page: Page, text: string): Promise<void> {
  await page.fill('[data-testid="text"]', text);
  await page.click('[data-testid="send"]');
}

const profile = mkdtempSync(join(tmpdir(), "parley-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
  page.on("pageerror", (e) => result.console.push(String(e)));
  await page.goto(`${api}/playground`);
  await page.waitForSelector('body[data-ready="true"]');
  result.packs = await page.locator('[data-testid="packs"] li').count();
  await shot(page, "packs");

  // 1. the form: a bad enum and a missing required variable come back as 422 next to the fields
  await page.click('[data-pack="customer-support"]');
  await page.waitForSelector('[data-testid="field-company_name"]');
  result.fields = await page.locator("#variables [data-name]").evaluateAll((nodes) =>
    nodes.map((n) => ({ name: (n as HTMLElement).dataset.name, tag: n.tagName,
      value: (n as HTMLInputElement).value,
      options: n.tagName === "SELECT" ? [...(n as HTMLSelectElement).options].map((o) => o.value) : null })));
  await page.fill("#new-user-id", "pg-alice");
  await page.fill("#var-product", "x".repeat(5));
  await page.click('[data-testid="create"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="error-company_name"]')?.textContent);
  result.formErrors = {
    company_name: await page.textContent('[data-testid="error-company_name"]'),
    form: await page.textContent('[data-testid="form-error"]'),
  };
  await shot(page, "form-errors");
  await page.fill("#var-company_name", "Acme Outdoor");
  await page.click('[data-testid="create"]');
  await page.waitForSelector('#chat:not([hidden])');
  result.conv = await page.getAttribute('[data-testid="chat-title"]', "data-conv");
  result.listed = await page.locator('[data-testid="conversations"] li').count();
  await shot(page, "conversation-created");

  // 2. a streamed reply: several DOM updates before the run completes, then usage and cost
  await watchReply(page);
  await send(page, "one two three four five six seven eight");
  await waitRun(page, "completed");
  result.stream = {
    updates: await page.evaluate(() => (globalThis as any).__updates),
    text: await lastReply(page).locator(".text").textContent(),
    usage: await lastReply(page).locator('[data-testid="usage"]').textContent(),
  };
  await shot(page, "streamed-reply");

  // 3. reload in the middle of a stream: the page reattaches and the reply finishes
  await send(page, long);
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('[data-testid="reply"]')].pop() as HTMLElement | undefined;
    return r?.dataset.status === "streaming" && (r.querySelector(".text")?.textContent ?? "").length > 12;
  });
  const before = await lastReply(page).locator(".text").textContent();
  const live = await page.evaluate(() => sessionStorage.getItem("parley.live"));
  await shot(page, "before-reload");
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction(() => document.getElementById("chat")?.dataset.run !== undefined);
  const reattached = await page.getAttribute("#chat", "data-reattached");
  const afterReloadText = await lastReply(page).locator(".text").textContent();
  await waitRun(page, "completed");
  result.reload = {
    before, live: live ? JSON.parse(live) : null, afterReloadText, reattached,
    text: await lastReply(page).locator(".text").textContent(),
    usage: await lastReply(page).locator('[data-testid="usage"]').textContent(),
    liveAfter: await page.evaluate(() => sessionStorage.getItem("parley.live")),
    replies: await page.locator('[data-testid="reply"]').count(),
  };
  await shot(page, "reloaded-and-finished");

  // 4. stop: the run is cancelled, nothing is committed
  await send(page, long);
  await page.waitForSelector('[data-testid="stop"]:not([hidden])');
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('[data-testid="reply"]')].pop() as HTMLElement | undefined;
    return (r?.querySelector(".text")?.textContent ?? "").length > 0 && r?.dataset.status === "streaming";
  });
  await page.click('[data-testid="stop"]');
  await waitRun(page, "cancelled");
  result.stop = {
    status: await lastReply(page).getAttribute("data-status"),
    stopHidden: await page.locator('[data-testid="stop"]').isHidden(),
  };
  await shot(page, "stopped");

  // 5. an image from the file input, with a preview, sent as a media part
  await page.setInputFiles('[data-testid="file"]', image);
  await page.waitForSelector('[data-testid="preview"]');
  result.preview = await page.locator('[data-testid="preview"]').evaluate((img) =>
    (img as HTMLImageElement).complete && (img as HTMLImageElement).naturalWidth);
  await shot(page, "image-attached");
  await send(page, "what is this");
  await waitRun(page, "completed");
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('[data-testid="msg-user"] img')] as HTMLImageElement[];
    return imgs.length > 0 && imgs[imgs.length - 1].complete && imgs[imgs.length - 1].naturalWidth > 0;
  });
  result.image = {
    userText: await page.locator('[data-testid="msg-user"]').last().locator(".text").textContent(),
    reply: await lastReply(page).locator(".text").textContent(),
    attachmentsLeft: await page.locator('[data-testid="attachment"]').count(),
  };
  await shot(page, "image-sent");

  // 6. drag and drop of the same image onto the composer
  const bytes = readFileSync(image).toString("base64");
  await page.evaluate((b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], "dropped.png", { type: "image/png" }));
    const target = document.getElementById("drop")!;
    target.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, bytes);
  await page.waitForSelector('[data-testid="preview"]');
  result.dropped = await page.locator('[data-testid="attachment"] figcaption').textContent();
  await send(page, "");
  await waitRun(page, "completed");
  result.droppedReply = await lastReply(page).locator(".text").textContent();
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('[data-testid="msg-user"] img')] as HTMLImageElement[];
    return imgs.length >= 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  });
  await shot(page, "image-dropped-and-sent");

  // 7. reopen from the list after a reload: the committed history, with usage per reply
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('[data-testid="filter-user"]', "pg-alice");
  await page.click('[data-testid="filter"]');
  await page.click(`[data-conv="${result.conv}"]`);
  await page.waitForSelector('[data-testid="reply"]');
  result.history = await page.locator("#messages > li").evaluateAll((nodes) =>
    nodes.map((n) => ({ role: (n as HTMLElement).dataset.role,
      usage: n.querySelector('[data-testid="usage"]')?.textContent ?? null,
      images: n.querySelectorAll("img").length })));
  await shot(page, "history");

  // 8. paging through a user's conversations
  await page.fill('[data-testid="filter-user"]', "pg-pager");
  await page.click('[data-testid="filter"]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversations"] li').length >= 10);
  const firstPage = await page.locator('[data-testid="conversations"] li').count();
  await page.click('[data-testid="more-conversations"]');
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="conversations"] li').length > n, firstPage);
  result.paging = {
    firstPage,
    all: await page.locator('[data-testid="conversations"] li').count(),
    moreHidden: await page.locator('[data-testid="more-conversations"]').isHidden(),
    ids: await page.locator('[data-testid="conversations"] li').evaluateAll((ns) => ns.map((n) => (n as HTMLElement).dataset.conv)),
  };
  await shot(page, "paging");
  console.log(JSON.stringify(result));
} catch (err) {
  result.error = String(err && (err as Error).stack || err);
  console.log(JSON.stringify(result));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
