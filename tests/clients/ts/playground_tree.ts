// Headless Chromium on GET /playground, the parts after the chat: the message tree (an edit
// or, without the edit API, a rollback and a new message make two siblings; the "2 / 2"
// arrows switch the page between the two branches), a regenerated reply (when the service
// has regenerate), rollbacks to a message and to a checkpoint, a fork, a tool call
// needing approval (approved with edited arguments; its card goes from pending to done and
// the reply appears, also after a reload) and one rejected with a reason, a client tool answered from the form, and the
// context bar (with the summary Compact wrote). A screenshot of each step goes to SHOTS. Prints one JSON line;
// tests/clients/test_playground.py judges it.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

const api = process.env.PARLEY_URL ?? "";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = process.env.SHOTS ?? join(tmpdir(), "playground-shots");
const conv = JSON.parse(process.env.CONVERSATIONS ?? "{}") as Record<string, { id: string; user: string }>;
mkdirSync(shots, { recursive: true });

const result: Record<string, any> = { steps: [], console: [] };
let step = 0;
async function shot(page: Page, name: string): Promise<void> {
  step += 1;
  const file = join(shots, `tree-${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.steps.push(file);
}

const lastUser = (page: Page) => page.locator('[data-testid="msg-user"]').last();
const lastReply = (page: Page) => page.locator('[data-testid="reply"]').last();
const texts = (page: Page, testid: string) =>
  page.locator(`[data-testid="${testid}"] > .text`).allTextContents();

async function waitRun(page: Page, outcome: string): Promise<void> {
  await page.waitForFunction((o) => document.getElementById("chat")?.dataset.run === o, outcome,
    { timeout: 30000 });
}

async function send(page: Page, text: string, outcome = "completed"): Promise<void> {
  await page.fill('[data-testid="text"]', text);
  await page.click('[data-testid="send"]');
  await waitRun(page, outcome);
}

async function open(page: Page, which: string): Promise<void> {
  await page.fill('[data-testid="filter-user"]', conv[which].user);
  await page.click('[data-testid="filter"]');
  await page.click(`[data-conv="${conv[which].id}"]`);
  await page.waitForFunction((id) => document.getElementById("chat")?.dataset.loaded === id, conv[which].id);
}

// The last user message shows `text` with the sibling position `pos`.
async function waitBranch(page: Page, text: string, pos: string): Promise<void> {
  await page.waitForFunction(([t, p]) => {
    const users = document.querySelectorAll('[data-testid="msg-user"]');
    const last = users[users.length - 1];
    return last?.querySelector(".text")?.textContent === t
      && last.querySelector('[data-testid="sibling-pos"]')?.textContent?.trim() === p;
  }, [text, pos]);
}

const profile = mkdtempSync(join(tmpdir(), "parley-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
  page.on("pageerror", (e) => result.console.push(String(e)));
  await page.goto(`${api}/playground`);
  await page.waitForSelector('body[data-ready="true"]');

  // 1. two siblings of the second user message, then the arrows switch between the branches
  await open(page, "tree");
  await send(page, "first question");
  await send(page, "second question");
  await page.waitForSelector('[data-testid="msg-user"] .tree-bar');
  result.editShown = await page.locator('[data-testid="edit"]').count() > 0;
  if (result.editShown) {
    result.via = "edit";
    await lastUser(page).locator('[data-testid="edit"]').click();
    await page.fill('[data-testid="edit-text"]', "second, edited");
    await shot(page, "editing");
    await page.click('[data-testid="edit-save"]');
    await waitRun(page, "completed");
  } else {
    result.via = "rollback";
    await page.locator('[data-testid="reply"]').first().locator('[data-testid="rollback-here"]').click();
    await page.waitForFunction(() => document.querySelectorAll("#messages > li").length === 2);
    await send(page, "second, edited");
  }
  await waitBranch(page, "second, edited", "2 / 2");
  result.edited = { users: await texts(page, "msg-user"), replies: await texts(page, "reply") };
  await shot(page, "edited-branch-2-of-2");
  await lastUser(page).locator('[data-testid="sibling-prev"]').click();
  await waitBranch(page, "second question", "1 / 2");
  result.previous = { users: await texts(page, "msg-user"), replies: await texts(page, "reply"),
    nextDisabled: await lastUser(page).locator('[data-testid="sibling-next"]').isDisabled(),
    prevDisabled: await lastUser(page).locator('[data-testid="sibling-prev"]').isDisabled() };
  await shot(page, "first-branch-1-of-2");
  await lastUser(page).locator('[data-testid="sibling-next"]').click();
  await waitBranch(page, "second, edited", "2 / 2");
  result.back = { users: await texts(page, "msg-user"), replies: await texts(page, "reply") };
  result.branches = await page.locator('[data-testid="branch"]').count();
  result.headBranches = await page.locator('[data-testid="branch"].selected').count();
  if (await page.locator('[data-testid="regenerate"]').count() > 0) {
    await lastReply(page).locator('[data-testid="regenerate"]').click();
    await waitRun(page, "completed");
    await page.waitForFunction(() => {
      const replies = document.querySelectorAll('[data-testid="reply"]');
      return replies[replies.length - 1]?.querySelector('[data-testid="sibling-pos"]')?.textContent?.trim() === "2 / 2";
    });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="branch"]').length === 3);
    result.regenerated = { users: await texts(page, "msg-user"), replies: await texts(page, "reply"),
      branches: await page.locator('[data-testid="branch"]').count() };
    await shot(page, "regenerated-reply-2-of-2");
  }

  // 2. a checkpoint of the head, then a fork at the first reply (opens the new conversation)
  await page.fill('[data-testid="checkpoint-name"]', "before fork");
  await page.click('[data-testid="create-checkpoint"]');
  await page.waitForSelector('[data-testid="checkpoint"]');
  result.checkpoints = await page.locator('[data-testid="checkpoint"]').allTextContents();
  await shot(page, "branches-and-checkpoint");
  // roll back to the first reply, then back to the checkpoint
  await page.locator('[data-testid="reply"]').first().locator('[data-testid="rollback-here"]').click();
  await page.waitForFunction(() => document.querySelectorAll("#messages > li").length === 2);
  result.rolledBack = await page.locator("#messages > li > .text").allTextContents();
  await page.locator('[data-testid="checkpoint"]').first().locator('[data-testid="rollback"]').click();
  await page.waitForFunction(() => document.querySelectorAll("#messages > li").length === 4);
  result.restored = { users: await texts(page, "msg-user"), replies: await texts(page, "reply") };
  await page.locator('[data-testid="reply"]').first().locator('[data-testid="fork-here"]').click();
  await page.waitForFunction((id) => {
    const c = document.querySelector('[data-testid="chat-title"]')?.getAttribute("data-conv");
    return c && c !== id && document.querySelectorAll("#messages > li").length === 2;
  }, conv.tree.id);
  result.fork = {
    conv: await page.getAttribute('[data-testid="chat-title"]', "data-conv"),
    forkedFrom: await page.textContent("#forked-from"),
    messages: await page.locator("#messages > li .text").allTextContents(),
  };
  await shot(page, "forked");

  // 3. a tool call needing approval: pending card, a reload keeps it, approve edited arguments
  await open(page, "refund");
  await send(page, "refund order A-1 please", "requires_action");
  await page.waitForSelector('[data-testid="approve"]');
  result.pending = {
    state: await page.locator('[data-testid="tool-card"]').last().getAttribute("data-state"),
    label: await page.locator('[data-testid="tool-state"]').last().textContent(),
  };
  await shot(page, "approval-pending");
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await open(page, "refund");
  await page.waitForSelector('[data-testid="approve"]');
  result.pendingAfterReload = await page.locator('[data-testid="tool-card"]').last().getAttribute("data-state");
  await page.fill('[data-testid="approval-args"]', JSON.stringify({ order_id: "A-1", amount: 80, reason: "damaged" }));
  await page.click('[data-testid="approve"]');
  await waitRun(page, "completed");
  await page.waitForFunction(() => document.querySelector('[data-testid="tool-card"]')?.getAttribute("data-state") === "done");
  result.approved = {
    state: await page.locator('[data-testid="tool-card"]').last().getAttribute("data-state"),
    buttons: await page.locator('[data-testid="approve"]').count(),
    tool: await page.locator('[data-testid="msg-tool"] .text').last().textContent(),
    reply: await lastReply(page).locator(".text").textContent(),
  };
  await shot(page, "approved-and-replied");

  // a rejection with a reason: the model gets "rejected: <reason>" as the call's (error) result
  await open(page, "reject");
  await send(page, "refund order A-1 please", "requires_action");
  await page.fill('[data-testid="reject-reason"]', "over the limit");
  await page.click('[data-testid="reject"]');
  await waitRun(page, "completed");
  result.rejected = {
    state: await page.locator('[data-testid="tool-card"]').last().getAttribute("data-state"),
    tool: await page.locator('[data-testid="msg-tool"] .text').last().textContent(),
    reply: await lastReply(page).locator(".text").textContent(),
  };
  await shot(page, "rejected");

  // 4. a client tool: the page asks for its output and sends it back
  await open(page, "clock");
  await send(page, "what time is it?", "requires_action");
  await page.waitForSelector('[data-testid="client-tool-form"]');
  await page.fill('[data-testid="tool-output"]', '{"time": "14:00"}');
  await shot(page, "client-tool-form");
  await page.click('[data-testid="send-tool-result"]');
  await waitRun(page, "completed");
  result.client = {
    state: await page.locator('[data-testid="tool-card"]').last().getAttribute("data-state"),
    tool: await page.locator('[data-testid="msg-tool"] .text').last().textContent(),
    reply: await lastReply(page).locator(".text").textContent(),
  };
  await shot(page, "client-tool-answered");

  // 5. the context bar of a conversation with strategy summarize, after Compact wrote a summary
  await open(page, "summary");
  await send(page, "fact: the sky is green");
  await send(page, "fact: the grass is blue");
  await page.click('[data-testid="compact"]');
  await page.waitForFunction(() =>
    document.querySelector('[data-testid="context-summary"]')?.textContent?.startsWith("summary in use"));
  result.context = {
    conv: conv.summary.id,
    sections: Object.fromEntries(await page.locator('[data-testid="context-numbers"] li').evaluateAll((ns) =>
      ns.map((n) => [(n as HTMLElement).dataset.testid, Number((n as HTMLElement).dataset.tokens)]))),
    segments: await page.locator("#context-bar .seg").evaluateAll((ns) =>
      ns.map((n) => ({ section: (n as HTMLElement).dataset.section, width: (n as HTMLElement).getBoundingClientRect().width }))),
    barWidth: await page.locator("#context-bar").evaluate((n) => n.getBoundingClientRect().width),
    included: Number(await page.getAttribute('[data-testid="context-messages"]', "data-included")),
    dropped: Number(await page.getAttribute('[data-testid="context-messages"]', "data-dropped")),
    summary: await page.textContent('[data-testid="context-summary"]'),
  };
  await shot(page, "context-bar");
  console.log(JSON.stringify(result));
} catch (err) {
  result.error = String(err && (err as Error).stack || err);
  console.log(JSON.stringify(result));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
