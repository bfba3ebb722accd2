/**
 * The game page in a real headless Chromium (Debian's `chromium` package at
 * /usr/bin/chromium), driven by playwright-core from Deno, against the real
 * server. The browser reaches the server through a TCP proxy, so "the
 * connection drops mid-turn" is a real cut of the browser's socket, not a
 * simulated one.
 *
 * Screenshots (desktop and phone width) are written to test-artifacts/.
 *
 * playwright-core runs under Deno, but only with all permissions: at import
 * it probes `/proc/sys/fs/binfmt_misc/WSLInterop`, which Deno grants only to
 * `--allow-all`. Under the project's narrower `deno task test` flags this
 * file therefore runs itself again as `deno test --allow-all` (allowed by
 * `--allow-run`) and reports that run's result.
 */
import assert from "node:assert/strict";
import type { BrowserContext, Page } from "playwright-core";
import { PAGE_CSP } from "../plugins/web/mod.ts";
import { DEATH_NARRATIVE, MortalStoryteller } from "./helpers/mortal_storyteller.ts";
import { getJson, startTestServer, type TestServer } from "./helpers/server.ts";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp_proxy.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url);

/** Chromium flags for a quiet, hermetic headless run (playwright adds --headless itself). */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** How long a condition may take before the test fails (a turn takes well under a second). */
const WAIT = { timeout: 20_000 };

/** Whether this process has the access playwright-core needs (only `--allow-all` gives it). */
function hasAllAccess(): boolean {
  try {
    Deno.statSync("/proc/sys/fs/binfmt_misc/WSLInterop");
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.NotCapable);
  }
}

function chromiumInstalled(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** Requests the server logged for a route pattern. */
function requests(server: TestServer, route: string): number {
  return server.logs.filter((line) => {
    const entry = JSON.parse(line);
    return entry.msg === "request" && entry.route === route;
  }).length;
}

/** Attribute changes of #game and the story, in the order the page made them. */
interface AttrChange {
  attr: string;
  old: string | null;
}

/** Start recording attribute changes (data-state, data-tokens, data-complete). */
async function recordChanges(page: Page): Promise<void> {
  await page.evaluate(`(() => {
    window.__changes = [];
    window.__observer?.disconnect();
    window.__observer = new MutationObserver((records) => {
      for (const r of records) window.__changes.push({ attr: r.attributeName, old: r.oldValue });
    });
    window.__observer.observe(document.querySelector("#game"), {
      attributes: true,
      attributeOldValue: true,
      subtree: true,
      attributeFilter: ["data-state", "data-tokens", "data-complete"],
    });
  })()`);
}

async function changes(page: Page): Promise<AttrChange[]> {
  return await page.evaluate("window.__changes") as AttrChange[];
}

/**
 * Wait for the page's state. A locator, not `waitForFunction`: the page's
 * CSP forbids eval, which string predicates need.
 */
async function gameState(page: Page, state: string): Promise<void> {
  await page.locator(`#game[data-state="${state}"]`).waitFor({ state: "attached", ...WAIT });
}

/** Submit an action with the keyboard and wait until the page is idle again. */
async function act(
  page: Page,
  action: string,
  end: "idle" | "gameover" | "rate_limited" = "idle",
) {
  const input = page.getByLabel("What do you do?");
  await input.fill(action);
  await input.press("Enter");
  await gameState(page, end);
}

/** The last story entry's narrative text. */
async function lastNarrative(page: Page): Promise<string> {
  return (await page.locator(".entry").last().locator(".narrative").textContent()) ?? "";
}

async function characterId(page: Page): Promise<string> {
  const id = await page.evaluate(`localStorage.getItem("dm.character_id")`) as string | null;
  assert.ok(id, "the page keeps the character id");
  return id;
}

async function chooseTransport(page: Page, name: "SSE" | "WebSocket") {
  await page.getByLabel(name, { exact: true }).check();
  assert.equal(
    await page.locator("#game").getAttribute("data-transport"),
    name === "SSE" ? "sse" : "websocket",
  );
}

/** Play a turn while the proxy cuts the browser's connection at the second token. */
async function playThroughCut(
  page: Page,
  server: TestServer,
  proxy: TcpProxy,
  action: string,
): Promise<void> {
  const reconnectsBefore = Number(await page.locator("#game").getAttribute("data-reconnects"));
  await recordChanges(page);
  const cut = proxy.cutWhen('"type":"token"', { occurrence: 2 });
  await act(page, action);
  await cut;
  const reconnects = Number(await page.locator("#game").getAttribute("data-reconnects"));
  assert.equal(reconnects, reconnectsBefore + 1, "the page lost the connection once");
  const states = (await changes(page)).filter((c) => c.attr === "data-state").map((c) => c.old);
  // The old values are the states left: … streaming → reconnecting → streaming → idle.
  assert.ok(states.includes("reconnecting"), `the page showed reconnecting: ${states}`);
  const sheet = (await getJson(`${server.url}/characters/${await characterId(page)}`)).body;
  const last = sheet.recent_turns.at(-1);
  assert.equal(last.user_action, action);
  assert.equal(await lastNarrative(page), last.narrative, "the resumed story is whole");
  assert.equal(
    await page.locator(".entry").last().locator(".narrative").getAttribute("data-complete"),
    "true",
  );
}

const NAME = "game page in Chromium: create, stream over SSE and WebSocket, survive cuts, reload";

/** Run this file again with --allow-all and report its result. */
async function rerunWithAllAccess() {
  const file = new URL(import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", file],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  // Show the steps, not the run's own summary line (CI reads the last summary).
  const steps = text.split("\n").filter((l) => /\.\.\. (ok|FAILED)/.test(l)).join("\n");
  if (!output.success) throw new Error(`the browser test failed:\n${text}`);
  console.log(steps);
}

async function browserScenario(t: Deno.TestContext) {
  if (!chromiumInstalled()) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  }
  const { chromium } = await import("playwright-core");
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const server = await startTestServer(
    { DM_SCRIPTED_DELAY_MS: "5" },
    // The real scripted storyteller, plus a way to die for the game-over screen.
    { llm: new MortalStoryteller({ delayMs: 5 }) },
  );
  const proxy = await startTcpProxy(server.server.port);
  const profile = await Deno.makeTempDir({ prefix: "dm-chromium-" });
  let context: BrowserContext | null = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 860 },
    });
    const page = context.pages()[0] ?? await context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
    });

    await t.step("the page and its scripts are served, built from TypeScript", async () => {
      const response = await page.goto(proxy.url);
      assert.equal(response?.status(), 200);
      assert.equal(await response?.headerValue("content-security-policy"), PAGE_CSP);
      await page.getByRole("heading", { name: "Create your character" }).waitFor(WAIT);
      // The library module is importable on its own, as docs/clients.md shows.
      const exported = await page.evaluate(
        `import("/static/client.js").then((m) => [typeof m.createClient, typeof m.DmClientError])`,
      );
      assert.deepEqual(exported, ["function", "function"]);
    });

    await t.step("create a character with the labelled form", async () => {
      await page.getByLabel("Name").fill("Aria");
      await page.getByLabel("Race").fill("Elf");
      await page.getByLabel("Class").fill("Ranger");
      await page.getByLabel(/Setting/).fill("A rain-soaked gothic kingdom.");
      await page.getByRole("button", { name: "Begin the adventure" }).click();
      await page.locator("#game").waitFor({ state: "visible", ...WAIT });
      assert.equal(await page.locator("#character-title").textContent(), "Aria, Elf Ranger");
      assert.match(await lastNarrative(page), /Aria wakes/);
      assert.equal(await page.locator("#status-value").textContent(), "Healthy");
      assert.equal(await page.locator("#places-value li").count(), 1);
      // Ready to type: the action box has focus.
      assert.equal(await page.evaluate(`document.activeElement?.id`), "action-input");
    });

    await t.step("SSE: tokens stream in before complete; input disabled meanwhile", async () => {
      await chooseTransport(page, "SSE");
      await recordChanges(page);
      const input = page.getByLabel("What do you do?");
      await input.fill("I walk north along the river");
      await input.press("Enter");
      await gameState(page, "streaming");
      assert.equal(await input.isDisabled(), true, "no second action while a turn runs");
      await gameState(page, "idle");
      const log = await changes(page);
      const streaming = log.findIndex((c) => c.attr === "data-state" && c.old === "submitting");
      const complete = log.findIndex((c) => c.attr === "data-complete");
      const tokens = log.filter((c, i) =>
        c.attr === "data-tokens" && i > streaming && i < complete
      );
      assert.ok(streaming >= 0 && complete > streaming, JSON.stringify(log));
      assert.ok(
        tokens.length >= 2,
        `tokens rendered one by one before complete: ${tokens.length}`,
      );
      assert.equal(await input.isDisabled(), false);
      assert.match(await lastNarrative(page), /You press on/);
      assert.equal(await page.evaluate(`document.activeElement?.id`), "action-input");
      assert.equal(requests(server, "/turn/stream"), 1);
    });

    await t.step("WebSocket: a fight fills the combat panel", async () => {
      await chooseTransport(page, "WebSocket");
      const sockets = requests(server, "/ws");
      await act(page, "I attack the shadows with my bow");
      assert.equal(requests(server, "/ws"), sockets + 1, "the turn went over the WebSocket");
      assert.match(await lastNarrative(page), /Battle is joined/);
      const enemies = await page.locator("#combat-value .enemy").count();
      assert.ok(enemies >= 1, "enemies are listed");
      assert.match((await page.locator("#combat-value").textContent()) ?? "", /round 1/);
    });

    await t.step("a cut connection mid-turn resumes and the turn finishes (SSE)", async () => {
      await chooseTransport(page, "SSE");
      await playThroughCut(page, server, proxy, "I keep fighting");
      assert.equal(requests(server, "/turns/:id/events"), 1, "resumed with Last-Event-ID");
    });

    await t.step(
      "a cut connection mid-turn resumes and the turn finishes (WebSocket)",
      async () => {
        await chooseTransport(page, "WebSocket");
        await playThroughCut(page, server, proxy, "I flee into the alleys");
      },
    );

    await t.step("screenshots at desktop and phone width", async () => {
      await page.screenshot({ path: new URL("browser-desktop.png", ARTIFACTS).pathname });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({
        path: new URL("browser-phone.png", ARTIFACTS).pathname,
        fullPage: true,
      });
      // Nothing overflows sideways at phone width.
      const overflow = await page.evaluate(
        `document.documentElement.scrollWidth - document.documentElement.clientWidth`,
      );
      assert.equal(overflow, 0);
      await page.setViewportSize({ width: 1280, height: 860 });
    });

    await t.step("reload continues the same character", async () => {
      const id = await characterId(page);
      const entries = await page.locator(".entry").count();
      await page.reload();
      await page.locator("#game").waitFor({ state: "visible", ...WAIT });
      assert.equal(await characterId(page), id);
      assert.equal(await page.locator(".entry").count(), entries, "the history is back");
      assert.equal(await page.locator("#game").getAttribute("data-transport"), "websocket");
      await act(page, "I rest by the fire");
      assert.match(await lastNarrative(page), /You rest a while/);
      assert.equal((await getJson(`${server.url}/characters/${id}`)).body.turn_count, 5);
    });

    await t.step("a reload in the middle of a turn picks the turn up again", async () => {
      const id = await characterId(page);
      const input = page.getByLabel("What do you do?");
      await input.fill("I explore the flooded cellar");
      await input.press("Enter");
      // Reload once the turn is visibly under way.
      await page.locator('.entry:last-child .narrative:not([data-tokens="0"])').waitFor(WAIT);
      await page.reload();
      await page.locator('#game[data-ready="true"]').waitFor({ state: "attached", ...WAIT });
      const sheet = (await getJson(`${server.url}/characters/${id}`)).body;
      assert.equal(sheet.turn_count, 6, "the turn ran once");
      const last = sheet.recent_turns.at(-1);
      assert.equal(last.user_action, "I explore the flooded cellar");
      assert.equal(await page.locator(".entry").count(), sheet.recent_turns.length, "shown once");
      assert.match(
        (await page.locator(".entry .you").last().textContent()) ?? "",
        /flooded cellar/,
      );
      assert.equal(await lastNarrative(page), last.narrative);
      assert.equal(await page.evaluate(`localStorage.getItem("dm.pending_turn")`), null);
    });

    await t.step("death shows the game-over screen, also after a reload", async () => {
      await act(page, "I leap into the abyss", "gameover");
      assert.equal(await lastNarrative(page), DEATH_NARRATIVE);
      await page.getByRole("heading", { name: "Your adventure is over" }).waitFor(WAIT);
      assert.equal(await page.locator("#action-form").isHidden(), true);
      assert.equal(await page.evaluate(`document.activeElement?.id`), "gameover-title");
      assert.equal(await page.locator("#status-value").textContent(), "Dead");
      await page.screenshot({
        path: new URL("browser-gameover.png", ARTIFACTS).pathname,
        fullPage: true,
      });
      await page.reload();
      await page.getByRole("heading", { name: "Your adventure is over" }).waitFor(WAIT);
      await page.getByRole("button", { name: "Create a new character" }).click();
      await page.getByRole("heading", { name: "Create your character" }).waitFor(WAIT);
      assert.equal(await page.evaluate(`localStorage.getItem("dm.character_id")`), null);
    });

    await t.step("rate limiting shows a countdown and gives the action back", async () => {
      const limited = await startTestServer({
        DM_SCRIPTED_DELAY_MS: "0",
        DM_TURN_RATE_PER_SECOND: "0.01",
        DM_TURN_BURST: "1",
      });
      try {
        const other = await context!.newPage();
        other.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
        await other.goto(limited.url);
        await other.getByLabel("Name").fill("Brann");
        await other.getByLabel("Race").fill("Dwarf");
        await other.getByLabel("Class").fill("Fighter");
        // Enter in a field submits the form.
        await other.getByLabel("Class").press("Enter");
        await other.locator("#game").waitFor({ state: "visible", ...WAIT });
        await act(other, "I look around");
        await act(other, "I look around again", "rate_limited");
        assert.match(
          (await other.locator("#status-line").textContent()) ?? "",
          /act again in \d+ s/,
        );
        assert.equal(await other.getByLabel("What do you do?").isDisabled(), true);
        assert.equal(
          await other.getByLabel("What do you do?").inputValue(),
          "I look around again",
        );
        await other.close();
      } finally {
        await limited.close();
      }
    });

    assert.deepEqual(problems, [], "no script errors or CSP violations");
  } finally {
    await context?.close();
    await proxy.close();
    await server.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

if (hasAllAccess()) Deno.test(NAME, browserScenario);
else Deno.test(`${NAME} (again with --allow-all)`, rerunWithAllAccess);
