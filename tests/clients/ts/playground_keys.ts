// The playground against PARLEY_AUTH=keys (PARLEY_PLAYGROUND=true): the page asks for a key,
// a wrong one is refused, the right one is kept in sessionStorage (this tab, survives a
// reload, never in localStorage or a cookie) and a new tab asks again. Prints one JSON line.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

const api = process.env.PARLEY_URL ?? "";
const key = process.env.USER_KEY ?? "";
const shots = process.env.SHOTS ?? join(tmpdir(), "playground-shots");
const profile = mkdtempSync(join(tmpdir(), "parley-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result: Record<string, any> = {};
const packs = (page: Page) => page.locator('[data-testid="packs"] li').count();
try {
  const page = await context.newPage();
  await page.goto(`${api}/playground`);
  await page.waitForSelector("#key-form:not([hidden])");
  result.asked = { status: await page.textContent('[data-testid="status"]'), packs: await packs(page) };
  await page.fill('[data-testid="key"]', "wrong-key");
  await page.click("#key-form button");
  await page.waitForFunction(() => (document.getElementById("status")?.textContent ?? "").includes("API key"));
  await page.waitForSelector("#key-form:not([hidden])");
  result.wrong = { packs: await packs(page) };
  await page.fill('[data-testid="key"]', key);
  await page.click("#key-form button");
  await page.waitForSelector('body[data-ready="true"]');
  await page.screenshot({ path: join(shots, "keys-1-accepted.png"), fullPage: true });
  // a user key acts for its own user: create with no user id, then stream a reply
  await page.click('[data-pack="general-assistant"]');
  await page.waitForSelector('[data-testid="field-assistant_name"]');
  await page.fill('[data-testid="new-user"]', "");
  await page.click('[data-testid="create"]');
  await page.waitForSelector("#chat:not([hidden])");
  await page.fill('[data-testid="text"]', "keyed hello");
  await page.click('[data-testid="send"]');
  await page.waitForFunction(() => document.getElementById("chat")?.dataset.run === "completed");
  result.accepted = {
    packs: await packs(page),
    formHidden: await page.locator("#key-form").isHidden(),
    session: await page.evaluate(() => sessionStorage.getItem("parley.key")),
    local: await page.evaluate(() => localStorage.length),
    cookies: (await context.cookies()).length,
    reply: await page.locator('[data-testid="reply"] .text').last().textContent(),
    filter: await page.inputValue('[data-testid="filter-user"]'),
    listed: await page.locator('[data-testid="conversations"] li').count(),
  };
  // hostile text is shown as text: no element is made from it, no script runs
  await page.evaluate(() => { (globalThis as any).__pwned = false; });
  await page.fill('[data-testid="text"]', '<img src=x onerror="globalThis.__pwned=true"><b>bold</b>');
  await page.click('[data-testid="send"]');
  await page.waitForFunction(() => document.getElementById("chat")?.dataset.run === "completed"
    && (document.querySelectorAll('[data-testid="reply"]').length === 2));
  result.hostile = {
    elements: await page.locator("#messages .text *").count(),
    reply: await page.locator('[data-testid="reply"] .text').last().textContent(),
    pwned: await page.evaluate(() => (globalThis as any).__pwned),
  };
  await page.screenshot({ path: join(shots, "keys-2-conversation.png"), fullPage: true });
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  result.reloaded = { packs: await packs(page), formHidden: await page.locator("#key-form").isHidden() };
  const other = await context.newPage();
  await other.goto(`${api}/playground`);
  await other.waitForSelector("#key-form:not([hidden])");
  result.newTab = { packs: await packs(other), session: await other.evaluate(() => sessionStorage.getItem("parley.key")) };
} catch (err) {
  result.error = String((err as Error)?.stack ?? err);
} finally {
  console.log(JSON.stringify(result));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
