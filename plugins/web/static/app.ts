/**
 * The game page. Served as `/static/app.js`, compiled from this file by the
 * `web` plugin at start-up; it talks to the service only through the client
 * library (`src/client`), so it plays turns exactly as any other client.
 *
 * State shown to tests and styles as data attributes on `#game`:
 * `data-state` (idle, submitting, streaming, reconnecting, rate_limited,
 * gameover), `data-transport`, `data-reconnects` (connections lost during
 * turns), `data-ready` (the character and any unfinished turn are loaded);
 * each story entry's narrative carries `data-tokens` and, once its turn
 * completed, `data-complete`.
 *
 * @example
 * ```html
 * <script type="module" src="/static/app.js"></script>
 * ```
 *
 * @module
 */
import {
  type CharacterSheet,
  type ConnectionState,
  createClient,
  DmClientError,
  type Transport,
  type TurnEvent,
  type TurnStream,
} from "../../../src/client/mod.ts";
import {
  byId,
  doc,
  make,
  type PageControl,
  type PageElement,
  type PageEvent,
  type PageForm,
} from "./dom.ts";

/** localStorage keys. */
const KEY = {
  character: "dm.character_id",
  transport: "dm.transport",
  pending: "dm.pending_turn",
  /** A bearer token for DM_AUTH=jwt, put here by whoever hosts the page. */
  token: "dm.token",
} as const;

/** A turn that was running when the page last saw it, so a reload can follow it. */
interface PendingTurn {
  turn_id: string;
  character_id: string;
  action: string;
}

const client = createClient({
  baseUrl: location.origin,
  token: () => localStorage.getItem(KEY.token),
});

const ui = {
  boot: byId("boot"),
  newCharacter: byId<PageControl>("new-character"),
  create: byId("create"),
  createTitle: byId("create-title"),
  createForm: byId<PageForm>("create-form"),
  createError: byId("create-error"),
  createSubmit: byId<PageControl>("create-submit"),
  createCancel: byId<PageControl>("create-cancel"),
  game: byId("game"),
  title: byId("character-title"),
  log: byId("log"),
  statusLine: byId("status-line"),
  actionForm: byId<PageForm>("action-form"),
  actionInput: byId<PageControl>("action-input"),
  actionSubmit: byId<PageControl>("action-submit"),
  gameover: byId("gameover"),
  gameoverTitle: byId("gameover-title"),
  gameoverText: byId("gameover-text"),
  gameoverNew: byId<PageControl>("gameover-new"),
  status: byId("status-value"),
  location: byId("location-value"),
  quest: byId("quest-value"),
  combat: byId("combat-value"),
  places: byId("places-value"),
};

type PageState =
  | "idle"
  | "submitting"
  | "streaming"
  | "reconnecting"
  | "rate_limited"
  | "gameover";

let characterId: string | null = null;
let sheet: CharacterSheet | null = null;
let countdown: ReturnType<typeof setInterval> | undefined;

// ------------------------------------------------------------------ helpers

function transport(): Transport {
  return localStorage.getItem(KEY.transport) === "websocket" ? "websocket" : "sse";
}

function setState(state: PageState): void {
  ui.game.dataset.state = state;
  const busy = state !== "idle";
  ui.actionInput.disabled = busy;
  ui.actionSubmit.disabled = busy;
  ui.log.setAttribute("aria-busy", String(state === "streaming" || state === "reconnecting"));
}

function say(text: string, kind: "info" | "error" = "info"): void {
  ui.statusLine.textContent = text;
  ui.statusLine.classList.toggle("error", kind === "error");
}

/** Scroll the story to the end, unless the reader scrolled up to reread. */
function follow(force = false): void {
  const log = ui.log;
  const nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  if (force || nearEnd) log.scrollTop = log.scrollHeight;
}

function errorText(e: unknown): string {
  if (e instanceof DmClientError) {
    switch (e.type) {
      case "network_error":
        return "Cannot reach the game server. Check your connection and try again.";
      case "overloaded":
      case "not_ready":
        return "The server is busy. Please try again in a moment.";
      default:
        return e.message;
    }
  }
  return "Something went wrong. Please try again.";
}

function readPending(): PendingTurn | null {
  try {
    const value = JSON.parse(localStorage.getItem(KEY.pending) ?? "null");
    return value && typeof value.turn_id === "string" ? value as PendingTurn : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ story

/** Add one exchange to the story; returns the element the narrative streams into. */
function addEntry(action: string | null, narrative = ""): PageElement {
  const text = make("div", { className: "narrative", data: { tokens: "0" } }, narrative);
  const entry = make(
    "article",
    { className: "entry" },
    action === null ? null : make(
      "p",
      { className: "you" },
      make("span", { className: "visually-hidden" }, "You: "),
      action,
    ),
    text,
  );
  ui.log.append(entry);
  follow(true);
  return text;
}

function renderHistory(s: CharacterSheet): void {
  ui.log.replaceChildren();
  for (const turn of s.recent_turns) addEntry(turn.user_action, turn.narrative);
  follow(true);
}

// ------------------------------------------------------------------ panels

function renderSheet(s: CharacterSheet): void {
  sheet = s;
  ui.title.textContent = `${s.name}, ${s.race} ${s.class_name}`;
  ui.status.textContent = s.status;
  ui.status.className = `badge status-${s.status.toLowerCase()}`;

  const where = s.location.display_name ?? "Unknown";
  ui.location.textContent = s.location.minor ? `${where} — ${s.location.minor}` : where;

  if (s.quest) {
    const last = s.quest.progress.at(-1);
    ui.quest.replaceChildren(
      make("p", { className: "quest-title" }, s.quest.title),
      make("p", {}, s.quest.summary),
    );
    if (last) ui.quest.append(make("p", { className: "muted" }, `Latest: ${last}`));
  } else {
    ui.quest.replaceChildren(make("p", { className: "muted" }, "None yet"));
  }

  if (s.combat) {
    const list = make("ul", { className: "enemies" });
    for (const enemy of s.combat.enemies) {
      list.append(make(
        "li",
        { className: `enemy status-${enemy.status.toLowerCase()}` },
        make("span", { className: "enemy-name" }, enemy.name),
        " ",
        make("span", { className: "badge" }, enemy.status),
        enemy.threat ? make("span", { className: "muted" }, ` threat: ${enemy.threat}`) : null,
      ));
    }
    ui.combat.replaceChildren(
      make("p", {}, `In combat — round ${s.combat.turn}`),
      list,
    );
  } else {
    ui.combat.replaceChildren(make("p", { className: "muted" }, "Not in combat"));
  }

  ui.places.replaceChildren();
  for (const poi of s.pois) {
    ui.places.append(make(
      "li",
      {},
      make("span", { className: "place-name" }, poi.name),
      make("span", { className: "muted place-text" }, poi.description),
    ));
  }
  if (s.pois.length === 0) ui.places.append(make("li", { className: "muted" }, "None yet"));

  if (s.status === "Dead") showGameOver();
}

/** Reload the character sheet (and, with `history`, the story) from the server. */
async function refreshSheet(history = false): Promise<void> {
  if (!characterId) return;
  try {
    const s = await client.getCharacter(characterId);
    if (history) renderHistory(s);
    renderSheet(s);
  } catch {
    // The story already shows the turn; the panels catch up next time.
  }
}

// ------------------------------------------------------------------ screens

function showCreate(): void {
  ui.boot.hidden = true;
  ui.game.hidden = true;
  ui.newCharacter.hidden = true;
  ui.create.hidden = false;
  ui.createCancel.hidden = characterId === null;
  ui.createError.hidden = true;
  ui.createTitle.focus();
}

function showGame(): void {
  ui.boot.hidden = true;
  ui.create.hidden = true;
  ui.game.hidden = false;
  ui.newCharacter.hidden = false;
}

function showGameOver(): void {
  clearInterval(countdown);
  setState("gameover");
  ui.actionForm.hidden = true;
  ui.gameover.hidden = false;
  ui.gameoverText.textContent = sheet
    ? `${sheet.name} has fallen. The tale ends here, but another can begin.`
    : "This character has fallen. The tale ends here.";
  say("");
  ui.gameoverTitle.focus();
}

function rateLimited(seconds: number): void {
  clearInterval(countdown);
  setState("rate_limited");
  let left = Math.max(1, Math.ceil(seconds));
  const tick = () => {
    if (left <= 0) {
      clearInterval(countdown);
      say("");
      setState("idle");
      ui.actionInput.focus();
      return;
    }
    say(`You are acting too fast. You can act again in ${left} s.`, "error");
    left--;
  };
  tick();
  countdown = setInterval(tick, 1000);
}

// ------------------------------------------------------------------ turns

/**
 * Stream a turn into `target`. Resolves when the turn ended (or failed
 * before starting); never throws.
 */
async function runTurn(
  stream: TurnStream,
  target: PageElement,
  action: string,
  lost: { count: number },
): Promise<"done" | "failed"> {
  let tokens = 0;
  target.dataset.tokens = "0";
  try {
    for await (const event of stream as AsyncIterable<TurnEvent>) {
      switch (event.type) {
        case "start":
          localStorage.setItem(
            KEY.pending,
            JSON.stringify({ turn_id: event.turn_id, character_id: event.character_id, action }),
          );
          break;
        case "token":
          target.append(event.content);
          tokens++;
          target.dataset.tokens = String(tokens);
          follow();
          break;
        case "complete":
          // The complete narrative is authoritative; streamed tokens equal it.
          target.textContent = event.narrative;
          target.dataset.complete = "true";
          localStorage.removeItem(KEY.pending);
          follow();
          say(lost.count > 0 ? "Reconnected; the turn finished." : "");
          return "done";
        case "error":
          localStorage.removeItem(KEY.pending);
          target.classList.add("failed");
          target.textContent = target.textContent || "…";
          say(
            event.recoverable
              ? `${event.message} Your action is back in the box; try again.`
              : event.message,
            "error",
          );
          if (event.recoverable) ui.actionInput.value = action;
          return "failed";
      }
    }
    return "done";
  } catch (e) {
    if (e instanceof DmClientError && e.type === "game_over") {
      target.closest(".entry")?.remove();
      showGameOver();
      return "failed";
    }
    if (e instanceof DmClientError && e.type === "rate_limited") {
      target.closest(".entry")?.remove();
      ui.actionInput.value = action;
      rateLimited(e.retryAfterSeconds ?? 1);
      return "failed";
    }
    if (e instanceof DmClientError && e.type === "turn_in_progress" && e.turnId) {
      // Another tab (or a turn from before a reload) is still running: show
      // that turn in this entry, and give the player's action back for after.
      const running = await client.getTurn(e.turnId).catch(() => null);
      const shown = running?.user_action ?? "(a turn from elsewhere)";
      target.closest(".entry")?.querySelector(".you")?.replaceChildren(
        make("span", { className: "visually-hidden" }, "You: "),
        shown,
      );
      const outcome = await runTurn(
        client.followTurn(e.turnId, { transport: transport(), onConnection: onConnection(lost) }),
        target,
        shown,
        lost,
      );
      ui.actionInput.value = action;
      say("Another turn for this character was still running; it is shown above.");
      return outcome;
    }
    if (!target.textContent) target.closest(".entry")?.remove();
    ui.actionInput.value = action;
    say(errorText(e), "error");
    return "failed";
  }
}

function onConnection(lost: { count: number }) {
  return (c: ConnectionState) => {
    if (c.state === "reconnecting") {
      lost.count++;
      ui.game.dataset.reconnects = String(Number(ui.game.dataset.reconnects ?? "0") + 1);
      setState("reconnecting");
      say(`Connection lost — reconnecting… (attempt ${c.attempt})`);
    } else if (c.state === "streaming") {
      setState("streaming");
      if (lost.count > 0) say("Reconnected.");
    }
  };
}

async function play(action: string): Promise<void> {
  if (!characterId) return;
  clearInterval(countdown);
  say("");
  setState("submitting");
  const target = addEntry(action);
  const lost = { count: 0 };
  const stream = client.playTurn(characterId, action, {
    transport: transport(),
    onConnection: onConnection(lost),
  });
  const outcome = await runTurn(stream, target, action, lost);
  if (ui.game.dataset.state === "gameover" || ui.game.dataset.state === "rate_limited") return;
  setState("idle");
  if (outcome === "done") await refreshSheet();
  if (ui.game.dataset.state === "idle") ui.actionInput.focus();
}

/** After a reload: follow a turn that was still running when the page went away. */
async function resumePending(): Promise<void> {
  const pending = readPending();
  if (!pending || pending.character_id !== characterId) return;
  let running = false;
  try {
    running = (await client.getTurn(pending.turn_id)).status === "running";
  } catch {
    running = false;
  }
  if (running) {
    setState("submitting");
    const target = addEntry(pending.action);
    const lost = { count: 0 };
    await runTurn(
      client.followTurn(pending.turn_id, {
        transport: transport(),
        onConnection: onConnection(lost),
      }),
      target,
      pending.action,
      lost,
    );
    setState("idle");
  }
  localStorage.removeItem(KEY.pending);
  // The history on screen was read before the turn ended (or while it was
  // ending), so read it again: now it holds the turn exactly once.
  await refreshSheet(true);
}

// ------------------------------------------------------------------ start

async function loadCharacter(id: string): Promise<void> {
  let s: CharacterSheet;
  try {
    s = await client.getCharacter(id);
  } catch (e) {
    if (
      e instanceof DmClientError &&
      (e.type === "character_not_found" || e.type === "validation_error")
    ) {
      localStorage.removeItem(KEY.character);
      characterId = null;
      showCreate();
      return;
    }
    ui.boot.hidden = false;
    ui.boot.textContent = `${errorText(e)} Reload the page to retry.`;
    return;
  }
  characterId = s.character_id;
  localStorage.setItem(KEY.character, s.character_id);
  ui.actionForm.hidden = false;
  ui.gameover.hidden = true;
  setState("idle");
  say("");
  showGame();
  renderHistory(s);
  renderSheet(s);
  if (s.status !== "Dead") {
    await resumePending();
    if (ui.game.dataset.state === "idle") ui.actionInput.focus();
  }
  // Everything a reload restores is on screen now.
  ui.game.dataset.ready = "true";
}

async function onCreate(e: PageEvent): Promise<void> {
  e.preventDefault();
  const field = (name: string) =>
    Array.from(ui.createForm.elements).find((c) => c.name === name)?.value.trim() ?? "";
  const input = {
    name: field("name"),
    race: field("race"),
    class_name: field("class_name"),
    custom_prompt: field("custom_prompt") || null,
  };
  const missing = (["name", "race", "class_name"] as const).filter((k) => input[k] === "");
  if (missing.length > 0) {
    ui.createError.hidden = false;
    ui.createError.textContent = `Please fill in: ${
      missing.map((k) => (k === "class_name" ? "class" : k)).join(", ")
    }.`;
    return;
  }
  ui.createSubmit.disabled = true;
  ui.createError.hidden = true;
  try {
    const created = await client.createCharacter(input);
    localStorage.removeItem(KEY.pending);
    ui.createForm.reset();
    await loadCharacter(created.character_id);
  } catch (err) {
    ui.createError.hidden = false;
    ui.createError.textContent = errorText(err);
  } finally {
    ui.createSubmit.disabled = false;
  }
}

function onAction(e: PageEvent): void {
  e.preventDefault();
  const action = ui.actionInput.value.trim();
  if (action === "" || ui.game.dataset.state !== "idle") return;
  ui.actionInput.value = "";
  void play(action);
}

function start(): void {
  const radios = Array.from(
    doc.documentElement.querySelectorAll('input[name="transport"]'),
  ) as PageControl[];
  const current = transport();
  ui.game.dataset.transport = current;
  for (const radio of radios) {
    radio.checked = radio.value === current;
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      localStorage.setItem(KEY.transport, radio.value);
      ui.game.dataset.transport = radio.value;
    });
  }
  ui.createForm.addEventListener("submit", (e) => void onCreate(e));
  ui.actionForm.addEventListener("submit", onAction);
  ui.newCharacter.addEventListener("click", showCreate);
  ui.createCancel.addEventListener("click", () => {
    showGame();
    ui.actionInput.focus();
  });
  ui.gameoverNew.addEventListener("click", () => {
    localStorage.removeItem(KEY.character);
    localStorage.removeItem(KEY.pending);
    characterId = null;
    showCreate();
  });
  const saved = localStorage.getItem(KEY.character);
  if (saved) void loadCharacter(saved);
  else showCreate();
}

start();
