// The web app in a real browser: Debian's chromium driven by
// playwright-core against a real `focusforge serve` that serves the built
// app (web/dist) and the services on one port. Each flow checks what is on
// the page, saves a screenshot into web/screenshots, and every screen is
// checked with axe-core (no serious or critical violations).
//
// Usage: node web/tests/browser.mjs path/to/focusforge
// CHROMIUM overrides the browser (default /usr/bin/chromium).

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, "..");
const shots = join(web, "screenshots");
const bin = resolve(process.argv[2] ?? "");
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}`);
    if (detail !== undefined) console.log(`     ${String(typeof detail === "string" ? detail : JSON.stringify(detail)).slice(0, 2000)}`);
  }
}

function freePort() {
  return new Promise((done, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

async function waitFor(url) {
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer`);
}

// Accessibility: axe-core in the page (run through the DevTools protocol,
// so the page's content security policy stays as users get it).
async function accessible(page, screen) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(`browser: ${screen} has no serious or critical accessibility violations (axe-core)`, bad.length === 0, bad);
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function go(page, screen) {
  await page.click(`nav a[href="#/${screen}"]`);
  await page.waitForSelector(`nav a[href="#/${screen}"][aria-current="page"]`);
}

// A step that throws is one failed check, and the flows go on.
async function step(name, f) {
  try {
    await f();
  } catch (e) {
    check(`browser: ${name}`, false, e?.stack ?? String(e));
  }
}

const text = async (loc) => ((await loc.textContent()) ?? "").trim();
const balanceOf = async (page) => {
  const loc = page.locator('[data-fact="balance"]');
  await loc.waitFor();
  return Number((await text(loc)).split(" ")[0]);
};

async function main() {
  mkdirSync(shots, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), "focusforge-web-"));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const log = openSync(join(data, "serve.log"), "w");
  const server = spawn(bin, ["serve", "--data-dir", data, "--listen", `127.0.0.1:${port}`, "--web-dir", join(web, "dist")], {
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      // The rules answer at once; ticks every second so a session shows them.
      FOCUSFORGE_LLM_BACKEND: process.env.FOCUSFORGE_LLM_BACKEND ?? "none",
      FOCUSFORGE_EVENTS_TICK_SECS: "1",
    },
  });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    await waitFor(`${origin}/dev/token`);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC", locale: "en-GB" });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) pageErrors.push(m.text());
    });

    await step("sign in", async () => {
      const res = await page.goto(origin);
      check("browser: the gateway serves the app at / with a content security policy",
        res?.status() === 200 && (res.headers()["content-security-policy"] ?? "").includes("default-src 'self'"), res?.headers());
      await page.getByRole("heading", { name: "Development sign-in" }).waitFor();
      await accessible(page, "sign-in");
      await shot(page, "01-sign-in");
      await page.getByLabel("User id").fill("not a user!");
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      const err = page.locator('[data-field-error="user"]');
      await err.waitFor();
      check("browser: a bad user id is shown next to the user id field", (await text(err)).length > 0, await text(err));
      await page.getByLabel("User id").fill("ada");
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.locator('[data-user="ada"]').waitFor();
      await page.locator('[data-stream="live"]').waitFor();
      check("browser: signed in as ada with the live event stream connected", true);
    });

    let balanceBefore = 0;
    await step("points before", async () => {
      await go(page, "rewards");
      balanceBefore = await balanceOf(page);
    });

    await step("task board: a bad field, the streaming breakdown, create, edit, start, complete", async () => {
      await go(page, "board");
      await page.getByLabel("Title").fill("   ");
      await page.getByRole("button", { name: "Add task" }).click();
      const err = page.locator('[data-field-error="title"]');
      await err.waitFor();
      const describedBy = await page.getByLabel("Title").getAttribute("aria-describedby");
      const errId = await err.getAttribute("id");
      check("browser: the server's BadRequest violation for title is shown next to the title field",
        (await page.getByLabel("Title").getAttribute("aria-invalid")) === "true" && (describedBy ?? "").split(" ").includes(errId),
        { describedBy, errId, text: await text(err) });
      await shot(page, "02-bad-field");

      await page.getByLabel("Title").fill("Write the quarterly sales report");
      await page.getByLabel("Estimated minutes").fill("120");
      await page.getByRole("button", { name: "Break it down with AI" }).click();
      const breakdown = page.locator('.breakdown[data-state="done"]');
      await breakdown.waitFor();
      const blocks = await breakdown.locator("li.block").allTextContents();
      const arrivals = Number(await breakdown.getAttribute("data-arrivals"));
      check("browser: the breakdown's blocks stream in one by one, then the result",
        blocks.length >= 3 && arrivals === blocks.length, { blocks, arrivals });
      await shot(page, "03-breakdown");
      await page.getByRole("button", { name: "Add task with these blocks" }).click();
      const card = page.locator('[data-column="To do"] article[data-task="Write the quarterly sales report"]');
      await card.waitFor();
      check("browser: the new task is on the board with its blocks", (await card.locator("ol.blocks li").count()) === blocks.length);

      await card.getByRole("button", { name: "Edit" }).click();
      await card.getByLabel("Title").fill("Write the Q3 sales report");
      await card.getByRole("button", { name: "Save" }).click();
      const renamed = page.locator('article[data-task="Write the Q3 sales report"]');
      await renamed.waitFor();
      check("browser: an edit renames the task", true);

      await renamed.getByRole("button", { name: "Start" }).click();
      const started = page.locator('[data-column="In progress"] article[data-task="Write the Q3 sales report"]');
      await started.waitFor();
      check("browser: a started task moves to In progress", true);

      await started.getByRole("button", { name: "Complete…" }).click();
      await started.getByLabel("What did you do?").fill("done");
      await started.getByRole("button", { name: "Check and complete" }).click();
      const proofErr = started.locator('[data-field-error="proof"]');
      await proofErr.waitFor();
      check("browser: \"done\" as proof is not accepted and the reason is shown next to the proof",
        (await text(proofErr)).length > 0 && (await page.locator('[data-column="Done"] article').count()) === 0, await text(proofErr));
      await started.getByLabel("What did you do?").fill(
        "Wrote the Q3 sales report: 12 pages covering revenue by region, churn and the hiring plan, with charts; sent it to the finance team for review.");
      await started.getByLabel("Link").fill("https://example.com/reports/q3-sales.pdf");
      await started.getByRole("button", { name: "Check and complete" }).click();
      await page.locator('[data-column="Done"] article[data-task="Write the Q3 sales report"]').waitFor();
      const notice = await text(page.locator("[data-notice]"));
      check("browser: a real proof completes the task and says the points it earned", /\+\d+ points/.test(notice), notice);
      await accessible(page, "task board");
      await shot(page, "04-board");
    });

    await step("points and the store", async () => {
      await go(page, "rewards");
      await page.waitForFunction((before) => {
        const el = document.querySelector('[data-fact="balance"]');
        return el && Number(el.textContent.split(" ")[0]) > before;
      }, balanceBefore);
      const after = await balanceOf(page);
      check("browser: the balance rose after the completed task", after > balanceBefore, { balanceBefore, after });
      await page.getByLabel("Reward", { exact: true }).fill("A walk in the park");
      await page.getByLabel("Cost in points").fill("5");
      await page.getByRole("button", { name: "Add reward" }).click();
      const redeem = page.getByRole("button", { name: "Redeem A walk in the park for 5 points" });
      await redeem.waitFor();
      await redeem.click();
      await page.locator('[data-owned="A walk in the park"]').waitFor();
      const left = await balanceOf(page);
      check("browser: redeeming a reward takes its cost from the balance", left === after - 5, { after, left });
      await accessible(page, "points and store");
      await shot(page, "05-rewards");
    });

    await step("mood log and patterns", async () => {
      await go(page, "mood");
      await page.getByLabel("Mood (1–5)").selectOption("4");
      await page.getByLabel("Tags").fill("slept-well");
      await page.getByLabel("Emotions").fill("calm");
      await page.getByRole("button", { name: "Log mood" }).click();
      await page.locator('[data-entries="1"]').waitFor();
      await page.getByLabel("Mood (1–5)").selectOption("2");
      await page.getByLabel("Tags").fill("meetings");
      await page.getByRole("button", { name: "Log mood" }).click();
      await page.locator('[data-entries="2"]').waitFor();
      const average = await text(page.locator('[data-fact="average"]'));
      const emotions = await text(page.locator('[data-fact="emotions"]'));
      check("browser: two moods give the patterns: 2 entries, average 3.0, the emotion counted",
        average.startsWith("3.0") && emotions.includes("calm"), { average, emotions });
      check("browser: the recent entries list both moods", (await page.locator("[data-mood]").count()) === 2);
      await accessible(page, "mood");
      await shot(page, "06-mood");
    });

    await step("calendar week with auto-scheduled blocks and the day plan", async () => {
      await go(page, "board");
      await page.getByLabel("Title").fill("Prepare the launch deck");
      await page.getByLabel("Estimated minutes").fill("90");
      await page.getByRole("button", { name: "Add task" }).click();
      await page.locator('[data-column="To do"] article[data-task="Prepare the launch deck"]').waitFor();
      await go(page, "calendar");
      await page.getByRole("button", { name: "Schedule my tasks" }).click();
      await page.locator("[data-scheduled]").waitFor();
      await page.locator('[data-kind="focus"]').first().waitFor();
      const slots = await page.locator('[data-kind="focus"]').allTextContents();
      check("browser: the week shows the task's auto-scheduled focus blocks",
        slots.length >= 1 && slots.every((s) => s.includes("Prepare the launch deck")), slots);
      await page.getByRole("button", { name: "Plan my day" }).click();
      await page.locator("[data-plan-items]").waitFor();
      check("browser: the day plan is shown", true);
      await accessible(page, "calendar");
      await shot(page, "07-calendar");
    });

    await step("a focus session ticks and ends from the event stream", async () => {
      await go(page, "focus");
      await page.getByLabel("Task").selectOption({ label: "Prepare the launch deck" });
      await page.getByLabel("Minutes").fill("1");
      await page.getByRole("button", { name: "Start focus session" }).click();
      await page.locator('[data-timer-state="running"]').waitFor();
      await page.waitForFunction(() => Number(document.querySelector("[data-ticks]")?.getAttribute("data-ticks")) >= 2, null, { timeout: 20_000 });
      check("browser: the running session shows the server's ticks", true);
      await accessible(page, "focus");
      await shot(page, "08-focus-running");
      // The session's timer ends it on the server; the page learns it from the stream.
      await page.locator('[data-timer-state="completed"]').waitFor({ timeout: 120_000 });
      check("browser: the session ends on its own, told by the event stream",
        (await text(page.locator("#timer-heading"))) === "Session complete");
      await shot(page, "09-focus-complete");
    });

    await step("a refused token goes back to sign-in", async () => {
      await page.evaluate(() => {
        const s = JSON.parse(sessionStorage.getItem("focusforge.token"));
        s.token = `${s.token.slice(0, -4)}AAAA`;
        sessionStorage.setItem("focusforge.token", JSON.stringify(s));
      });
      await page.reload();
      await page.getByRole("heading", { name: "Sign in to FocusForge" }).waitFor();
      const banner = await text(page.locator(".banner"));
      check("browser: UNAUTHENTICATED brings the sign-in page back with the reason", banner.includes("refused"), banner);
      await shot(page, "10-signed-out");
    });

    check("browser: no script errors or content security policy violations on the page", pageErrors.length === 0, pageErrors);
  } catch (e) {
    check("browser: the flows ran to the end", false, e?.stack ?? String(e));
  } finally {
    await browser.close();
    server.kill("SIGTERM");
  }
  console.log(`browser: ${passed} passed, ${failed} failed (screenshots in ${shots})`);
  process.exitCode = failed ? 1 : 0;
}

await main();
