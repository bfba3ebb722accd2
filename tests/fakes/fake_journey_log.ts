/**
 * A contract fake of the journey-log service for tests: `Deno.serve` on
 * 127.0.0.1 with an ephemeral port, state in memory, answers in the
 * documented shapes, and the behaviour of the endpoints dungeon-master uses
 * (characters, context, narrative, quest, combat, POIs, health).
 *
 * Every request is checked against our schemas of the documented contract
 * (route, UUID path ids, `X-User-Id` where it is required or present, query
 * parameter types and ranges, request bodies with unknown fields forbidden).
 * A request that breaks it is answered 422 and recorded in
 * {@link FakeJourneyLog.violations}, which a test asserts is empty. Each
 * answer the fake itself gives is also checked against the response
 * schemas, so the fake cannot drift from the shapes the adapter reads.
 *
 * Faults are scripted per test with {@link FakeJourneyLog.fault}: a status
 * (404, 409, 500, …), a slow answer (longer than the client's timeout) or a
 * malformed body, on one route, for a number of requests.
 *
 * @example
 * ```ts
 * await using fake = await FakeJourneyLog.start();
 * fake.fault({ method: "PUT", route: "/characters/{character_id}/combat", status: 500 });
 * // … run turns against fake.url …
 * assert.deepEqual(fake.violations, []);
 * ```
 *
 * @module
 */
import type { z } from "zod";
import {
  AppendNarrativeRequestSchema,
  AppendNarrativeResponseSchema,
  CharacterContextResponseSchema,
  CharacterResponseSchema,
  CreateCharacterRequestSchema,
  CreatePoiRequestSchema,
  CreatePoiResponseSchema,
  GetNarrativeResponseSchema,
  GetPoisResponseSchema,
  GetQuestResponseSchema,
  GetRandomPoisResponseSchema,
  QUERY_LIMITS,
  QuestRequestSchema,
  SetQuestResponseSchema,
  UpdateCombatRequestSchema,
  UpdateCombatResponseSchema,
} from "../../src/store/journey_log/schemas.ts";

/** A scripted fault on one route. */
export interface FakeFault {
  method: string;
  /** Route template, e.g. `/characters/{character_id}/combat`. */
  route: string;
  /** Answer this status (with the service's `http_error` envelope) instead of handling the request. */
  status?: number;
  /** Wait this long before handling (a slow service); dropped unhandled if the fake closes first. */
  delayMs?: number;
  /** Answer the route's success status with this body, which breaks the contract. */
  malformed?: string;
  /** How many matching requests get the fault; default all. */
  times?: number;
}

/** One request the fake received. */
export interface FakeJlRequest {
  method: string;
  /** The matched route template, or null when none matched. */
  route: string | null;
  path: string;
  query: Record<string, string>;
  /** Header names lowercased. */
  headers: Record<string, string>;
  body: unknown;
  /** The status answered (0 while pending, or when the client went away). */
  status: number;
}

/** A request that broke the contract. */
export interface ContractViolation {
  method: string;
  path: string;
  problem: string;
}

/** A stored narrative turn. */
export interface FakeTurn {
  turn_id: string;
  player_action: string;
  gm_response: string;
  timestamp: string;
  /** Insertion order, breaking timestamp ties. */
  seq: number;
}

/** A stored POI (subcollection view). */
export interface FakePoi {
  id: string;
  name: string;
  description: string;
  created_at: string;
  tags: string[] | null;
  seq: number;
}

/** JSON object (documents are built and sent as plain JSON). */
// deno-lint-ignore no-explicit-any -- documents are free-form JSON the tests index into.
type Doc = Record<string, any>;

/** One character's state. */
export interface FakeCharacter {
  doc: Doc;
  turns: FakeTurn[];
  pois: FakePoi[];
}

type Bool = "bool";
interface IntSpec {
  min: number;
  max: number;
}
type QuerySpec = Record<string, IntSpec | Bool | "string" | "timestamp">;

interface RouteSpec {
  method: string;
  route: string;
  /** X-User-Id: required (mutations), optional (reads) or not used. */
  user: "required" | "optional" | "none";
  query?: QuerySpec;
  body?: z.ZodType;
  success: number;
  response?: z.ZodType;
  handle: (req: Handled) => Answer;
}

interface Handled {
  params: Record<string, string>;
  query: URLSearchParams;
  userId: string | null;
  body: Doc;
}

interface Answer {
  status: number;
  body?: unknown;
}

const UUID_RE =
  /^\{?(urn:uuid:)?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i;

/** The service's timestamps: ISO 8601 UTC, microseconds, `Z`. */
function serverTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

function httpError(status: number, message: string): Answer {
  return {
    status,
    body: { error: "http_error", message, status_code: status, request_id: "fake" },
  };
}

function canonicalUuid(raw: string): string {
  const hex = raw.replace(/^\{?(urn:uuid:)?/i, "").replace(/\}$/, "").replaceAll("-", "")
    .toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** The journey-log contract fake. */
export class FakeJourneyLog {
  /** Base URL, e.g. `http://127.0.0.1:54321`. */
  readonly url: string;
  readonly requests: FakeJlRequest[] = [];
  readonly violations: ContractViolation[] = [];
  /** State by character id. */
  readonly characters = new Map<string, FakeCharacter>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #faults: (FakeFault & { left: number })[] = [];
  readonly #routes: RouteSpec[];
  readonly #waits = new Set<
    { timer: ReturnType<typeof setTimeout>; resolve: (done: boolean) => void }
  >();
  #seq = 0;
  #clock = 0;
  #rng = 0x2545f491;

  private constructor() {
    this.#routes = this.#defineRoutes();
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => this.#serve(request),
    );
    this.url = `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Start a fake on an ephemeral port. */
  static start(): Promise<FakeJourneyLog> {
    return Promise.resolve(new FakeJourneyLog());
  }

  /** Script a fault; later faults on the same route are used after earlier ones run out. */
  fault(fault: FakeFault): void {
    this.#faults.push({ ...fault, left: fault.times ?? Number.POSITIVE_INFINITY });
  }

  /** Drop every scripted fault. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Requests that matched `method` and `route`. */
  calls(method: string, route: string): FakeJlRequest[] {
    return this.requests.filter((r) => r.method === method && r.route === route);
  }

  async close(): Promise<void> {
    for (const wait of this.#waits) {
      clearTimeout(wait.timer);
      wait.resolve(false);
    }
    this.#waits.clear();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** A server timestamp, strictly increasing even within one millisecond. */
  #now(): string {
    this.#clock = Math.max(Date.now(), this.#clock + 1);
    return serverTime(this.#clock);
  }

  /** Deterministic sampling, so a test sees the same POIs every run. */
  #random(): number {
    this.#rng = (Math.imul(this.#rng, 1103515245) + 12345) >>> 0;
    return this.#rng / 2 ** 32;
  }

  #violate(request: FakeJlRequest, problem: string): Answer {
    this.violations.push({ method: request.method, path: request.path, problem });
    return {
      status: 422,
      body: {
        error: "validation_error",
        message: "Request validation failed",
        errors: [{ loc: ["request"], msg: problem, type: "contract" }],
        request_id: "fake",
      },
    };
  }

  async #serve(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, key) => headers[key] = value);
    const text = await request.text();
    let body: unknown = undefined;
    if (text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    const record: FakeJlRequest = {
      method: request.method,
      route: null,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
      status: 0,
    };
    this.requests.push(record);
    const answer = await this.#answer(request, url, record, text);
    if (answer === null) return new Response(null, { status: 499 });
    record.status = answer.status;
    if (answer.body === undefined) return new Response(null, { status: answer.status });
    const payload = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
    return new Response(payload, {
      status: answer.status,
      headers: { "content-type": "application/json" },
    });
  }

  async #answer(
    request: Request,
    url: URL,
    record: FakeJlRequest,
    text: string,
  ): Promise<Answer | null> {
    const match = this.#match(request.method, url.pathname);
    if (match === "no_method" || match === null) {
      const wrongMethod = match === "no_method";
      this.violations.push({
        method: request.method,
        path: url.pathname,
        problem: wrongMethod ? "method not allowed on this route" : "no such route in the contract",
      });
      return wrongMethod
        ? { status: 405, body: { detail: "Method Not Allowed" } }
        : { status: 404, body: { detail: "Not Found" } };
    }
    const { spec, raw } = match;
    record.route = spec.route;
    const problem = this.#validate(spec, raw, url.searchParams, request.headers, text);
    if (problem !== null) return this.#violate(record, problem);
    const params = Object.fromEntries(
      Object.entries(raw).map(([k, v]) => [k, canonicalUuid(v)]),
    );
    const userHeader = request.headers.get("x-user-id");
    const fault = this.#faults.find((f) =>
      f.left > 0 && f.method === spec.method && f.route === spec.route
    );
    if (fault) fault.left--;
    if (fault?.delayMs !== undefined) {
      const completed = await this.#wait(fault.delayMs);
      if (!completed) return null;
    }
    if (fault?.status !== undefined) return httpError(fault.status, "scripted fault");
    if (fault?.malformed !== undefined) return { status: spec.success, body: fault.malformed };
    const answer = spec.handle({
      params,
      query: url.searchParams,
      userId: userHeader === null ? null : userHeader.trim(),
      body: (record.body ?? {}) as Doc,
    });
    if (answer.status === spec.success && spec.response) {
      const checked = spec.response.safeParse(answer.body);
      if (!checked.success) {
        this.violations.push({
          method: spec.method,
          path: url.pathname,
          problem: `the fake's own answer breaks the contract: ${checked.error.message}`,
        });
      }
    }
    return answer;
  }

  /**
   * Wait `ms`; false when the fake closes first. The request is then
   * dropped unhandled, as a service that never got to it would.
   */
  #wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const pending = {
        timer: setTimeout(() => {
          this.#waits.delete(pending);
          resolve(true);
        }, ms),
        resolve,
      };
      this.#waits.add(pending);
    });
  }

  /** The route `method path` matches; `no_method` when only the path is known. */
  #match(
    method: string,
    path: string,
  ): { spec: RouteSpec; raw: Record<string, string> } | "no_method" | null {
    const parts = path.split("/");
    let pathMatched = false;
    for (const spec of this.#routes) {
      const template = spec.route.split("/");
      if (template.length !== parts.length) continue;
      const raw: Record<string, string> = {};
      const ok = template.every((segment, i) => {
        const param = /^\{(\w+)\}$/.exec(segment);
        if (param) {
          raw[param[1]] = decodeURIComponent(parts[i]);
          return parts[i] !== "";
        }
        return segment === parts[i];
      });
      if (!ok) continue;
      pathMatched = true;
      if (spec.method === method) return { spec, raw };
    }
    return pathMatched ? "no_method" : null;
  }

  #validate(
    spec: RouteSpec,
    raw: Record<string, string>,
    query: URLSearchParams,
    headers: Headers,
    text: string,
  ): string | null {
    for (const [name, value] of Object.entries(raw)) {
      if (!UUID_RE.test(value)) return `${name} is not a UUID`;
    }
    const user = headers.get("x-user-id");
    if (spec.user === "required" && user === null) return "X-User-Id is required";
    if (spec.user !== "none" && user !== null && user.trim() === "") {
      return "X-User-Id must not be blank";
    }
    for (const [key, value] of query) {
      const rule = spec.query?.[key];
      if (rule === undefined) return `unknown query parameter ${key}`;
      if (rule === "bool") {
        if (!["true", "false"].includes(value)) return `${key} must be true or false`;
      } else if (rule === "timestamp") {
        if (Number.isNaN(Date.parse(value))) return `${key} must be an ISO 8601 timestamp`;
      } else if (typeof rule === "object") {
        const n = Number(value);
        if (!/^-?\d+$/.test(value) || n < rule.min || n > rule.max) {
          return `${key} must be an integer from ${rule.min} to ${rule.max}`;
        }
      }
    }
    if (spec.body) {
      if (headers.get("content-type")?.split(";")[0].trim() !== "application/json") {
        return "the body must be application/json";
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return "the body is not JSON";
      }
      const checked = spec.body.safeParse(parsed);
      if (!checked.success) return `invalid body: ${checked.error.message}`;
    } else if (text !== "") {
      return "this operation takes no body";
    }
    return null;
  }

  /** The character if it exists and the header (when sent) names its owner; else the error answer. */
  #owned(h: Handled): FakeCharacter | Answer {
    const c = this.characters.get(h.params.character_id);
    if (!c) return httpError(404, `Character '${h.params.character_id}' not found`);
    if (h.userId !== null && h.userId !== c.doc.owner_user_id) {
      return httpError(403, "Access denied: user ID does not match character owner");
    }
    return c;
  }

  #touch(c: FakeCharacter): void {
    c.doc.updated_at = this.#now();
  }

  #turnsByTime(c: FakeCharacter): FakeTurn[] {
    return [...c.turns].sort((a, b) =>
      Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.seq - b.seq
    );
  }

  #poisNewestFirst(c: FakeCharacter): FakePoi[] {
    return [...c.pois].sort((a, b) =>
      Date.parse(b.created_at) - Date.parse(a.created_at) || b.seq - a.seq
    );
  }

  #defineRoutes(): RouteSpec[] {
    const turnView = (t: FakeTurn) => ({
      turn_id: t.turn_id,
      turn_number: null,
      player_action: t.player_action,
      gm_response: t.gm_response,
      timestamp: t.timestamp,
      game_state_snapshot: null,
      metadata: null,
    });
    const poiView = (p: FakePoi) => ({
      id: p.id,
      name: p.name,
      description: p.description,
      created_at: p.created_at,
      tags: p.tags,
    });
    const isActive = (state: Doc | null) =>
      state !== null && (state.enemies as Doc[]).some((e) => e.status !== "Dead");
    const int = (q: URLSearchParams, key: string, fallback: number) =>
      q.has(key) ? Number(q.get(key)) : fallback;
    const bool = (q: URLSearchParams, key: string, fallback: boolean) =>
      q.has(key) ? q.get(key) === "true" : fallback;
    /** Run `fn` on an owned character, or answer its 404/403. */
    const owned = (fn: (c: FakeCharacter, h: Handled) => Answer) => (h: Handled): Answer => {
      const c = this.#owned(h);
      return "doc" in c ? fn(c, h) : c;
    };
    const character = "/characters/{character_id}";
    return [
      {
        method: "GET",
        route: "/health",
        user: "none",
        success: 200,
        handle: () => ({
          status: 200,
          body: { status: "healthy", service: "journey-log", environment: "test", version: "0" },
        }),
      },
      {
        method: "POST",
        route: "/characters",
        user: "required",
        body: CreateCharacterRequestSchema,
        success: 201,
        response: CharacterResponseSchema,
        handle: (h) => {
          const b = h.body;
          const owner = h.userId!;
          for (const c of this.characters.values()) {
            const id = c.doc.player_state.identity;
            if (
              c.doc.owner_user_id === owner && id.name === b.name && id.race === b.race &&
              id.class === b.class
            ) {
              return httpError(409, "Character already exists for this user");
            }
          }
          const character_id = crypto.randomUUID();
          const now = this.#now();
          const doc: Doc = {
            character_id,
            owner_user_id: owner,
            adventure_prompt: b.adventure_prompt.trim().replace(/\s+/g, " "),
            player_state: {
              identity: { name: b.name, race: b.race, class: b.class },
              status: "Healthy",
              equipment: [],
              inventory: [],
              location: b.location_id
                ? { id: b.location_id, display_name: b.location_display_name }
                : { id: "origin:nexus", display_name: "The Nexus" },
              additional_fields: {},
            },
            world_pois_reference: `characters/${character_id}/pois`,
            narrative_turns_reference: `characters/${character_id}/narrative_turns`,
            schema_version: "1.0.0",
            created_at: now,
            updated_at: now,
            world_state: null,
            world_pois: [],
            active_quest: null,
            archived_quests: [],
            combat_state: null,
            additional_metadata: {},
          };
          this.characters.set(character_id, { doc, turns: [], pois: [] });
          return { status: 201, body: { character: structuredClone(doc) } };
        },
      },
      {
        method: "GET",
        route: character,
        user: "optional",
        success: 200,
        response: CharacterResponseSchema,
        handle: owned((c) => ({ status: 200, body: { character: structuredClone(c.doc) } })),
      },
      {
        method: "GET",
        route: `${character}/context`,
        user: "optional",
        query: {
          recent_n: QUERY_LIMITS.contextRecentN,
          include_pois: "bool",
          include_narrative: "bool",
          include_combat: "bool",
          include_quest: "bool",
        },
        success: 200,
        response: CharacterContextResponseSchema,
        handle: owned((c, h) => {
          const n = int(h.query, "recent_n", 20);
          const includePois = bool(h.query, "include_pois", false);
          const includeNarrative = bool(h.query, "include_narrative", true);
          const includeCombat = bool(h.query, "include_combat", true);
          const includeQuest = bool(h.query, "include_quest", true);
          const recent = includeNarrative ? this.#turnsByTime(c).slice(-n) : [];
          const combat = includeCombat ? c.doc.combat_state : null;
          const active = isActive(combat);
          const quest = includeQuest ? c.doc.active_quest : null;
          const sample = includePois ? this.#sample(c.pois, 3) : [];
          return {
            status: 200,
            body: {
              character_id: c.doc.character_id,
              player_state: structuredClone(c.doc.player_state),
              quest: structuredClone(quest),
              has_active_quest: quest !== null,
              combat: { active, state: active ? structuredClone(combat) : null },
              narrative: {
                recent_turns: recent.map(turnView),
                requested_n: n,
                returned_n: recent.length,
                max_n: 100,
              },
              world: { pois_sample: sample.map(poiView), pois_cap: 3, include_pois: includePois },
              metadata: {
                firestore_reads: "1 character doc + 1 narrative query + optional 1 POI query",
                narrative_max_n: 100,
                narrative_requested_n: n,
                pois_cap: 3,
                pois_requested: includePois,
              },
            },
          };
        }),
      },
      {
        method: "POST",
        route: `${character}/narrative`,
        user: "required",
        body: AppendNarrativeRequestSchema,
        success: 201,
        response: AppendNarrativeResponseSchema,
        handle: owned((c, h) => {
          const b = h.body;
          const turn: FakeTurn = {
            turn_id: crypto.randomUUID(),
            player_action: b.user_action,
            gm_response: b.ai_response,
            timestamp: b.timestamp ? serverTime(Date.parse(b.timestamp)) : this.#now(),
            seq: ++this.#seq,
          };
          c.turns.push(turn);
          this.#touch(c);
          return { status: 201, body: { turn: turnView(turn), total_turns: c.turns.length } };
        }),
      },
      {
        method: "GET",
        route: `${character}/narrative`,
        user: "optional",
        query: { n: QUERY_LIMITS.narrativeN, since: "timestamp" },
        success: 200,
        response: GetNarrativeResponseSchema,
        handle: owned((c, h) => {
          const n = int(h.query, "n", 10);
          const since = h.query.get("since");
          const after = this.#turnsByTime(c).filter((t) =>
            since === null || Date.parse(t.timestamp) > Date.parse(since)
          );
          const turns = after.slice(-n);
          return {
            status: 200,
            body: {
              turns: turns.map(turnView),
              metadata: {
                requested_n: n,
                returned_count: turns.length,
                total_available: after.length,
              },
            },
          };
        }),
      },
      {
        method: "POST",
        route: `${character}/pois`,
        user: "required",
        body: CreatePoiRequestSchema,
        success: 201,
        response: CreatePoiResponseSchema,
        handle: owned((c, h) => {
          const b = h.body;
          const poi: FakePoi = {
            id: crypto.randomUUID(),
            name: b.name,
            description: b.description,
            created_at: b.timestamp ? serverTime(Date.parse(b.timestamp)) : this.#now(),
            tags: b.tags ?? null,
            seq: ++this.#seq,
          };
          c.pois.push(poi);
          this.#touch(c);
          return { status: 201, body: { poi: poiView(poi) } };
        }),
      },
      {
        method: "GET",
        route: `${character}/pois`,
        user: "optional",
        query: { limit: QUERY_LIMITS.poisLimit, cursor: "string" },
        success: 200,
        response: GetPoisResponseSchema,
        handle: owned((c, h) => {
          const limit = int(h.query, "limit", 10);
          const all = this.#poisNewestFirst(c);
          const cursor = h.query.get("cursor");
          let start = 0;
          if (cursor !== null) {
            const at = all.findIndex((p) => p.id === cursor);
            if (at < 0) {
              return httpError(400, "Invalid or expired cursor. Please restart pagination.");
            }
            start = at + 1;
          }
          const page = all.slice(start, start + limit);
          const more = start + limit < all.length;
          return {
            status: 200,
            body: {
              pois: page.map(poiView),
              count: page.length,
              cursor: more ? page[page.length - 1].id : null,
            },
          };
        }),
      },
      {
        method: "GET",
        route: `${character}/pois/random`,
        user: "optional",
        query: { n: QUERY_LIMITS.randomPoisN },
        success: 200,
        response: GetRandomPoisResponseSchema,
        handle: owned((c, h) => {
          const n = int(h.query, "n", 3);
          const sample = this.#sample(c.pois, n);
          return {
            status: 200,
            body: {
              pois: sample.map(poiView),
              count: sample.length,
              requested_n: n,
              total_available: c.pois.length,
            },
          };
        }),
      },
      {
        method: "PUT",
        route: `${character}/quest`,
        user: "required",
        body: QuestRequestSchema,
        success: 200,
        response: SetQuestResponseSchema,
        handle: owned((c, h) => {
          if (c.doc.active_quest !== null) {
            return httpError(
              409,
              "An active quest already exists for this character. Please DELETE the existing quest before setting a new one.",
            );
          }
          const b = h.body;
          const quest = {
            name: b.name,
            description: b.description,
            requirements: b.requirements ?? [],
            rewards: {
              items: b.rewards.items ?? [],
              currency: b.rewards.currency ?? {},
              experience: b.rewards.experience ?? null,
            },
            completion_state: b.completion_state,
            updated_at: serverTime(Date.parse(b.updated_at)),
          };
          c.doc.active_quest = quest;
          this.#touch(c);
          return { status: 200, body: { quest: structuredClone(quest) } };
        }),
      },
      {
        method: "GET",
        route: `${character}/quest`,
        user: "optional",
        success: 200,
        response: GetQuestResponseSchema,
        handle: owned((c) => ({
          status: 200,
          body: { quest: structuredClone(c.doc.active_quest) },
        })),
      },
      {
        method: "DELETE",
        route: `${character}/quest`,
        user: "required",
        success: 204,
        handle: owned((c) => {
          if (c.doc.active_quest !== null) {
            c.doc.archived_quests.push({ quest: c.doc.active_quest, cleared_at: this.#now() });
            c.doc.archived_quests = c.doc.archived_quests.slice(-50);
            c.doc.active_quest = null;
            this.#touch(c);
          }
          return { status: 204 };
        }),
      },
      {
        method: "PUT",
        route: `${character}/combat`,
        user: "required",
        body: UpdateCombatRequestSchema,
        success: 200,
        response: UpdateCombatResponseSchema,
        handle: owned((c, h) => {
          const raw = h.body.combat_state as Doc | null;
          const state = raw === null ? null : {
            combat_id: raw.combat_id,
            started_at: raw.started_at,
            turn: raw.turn ?? 1,
            enemies: (raw.enemies as Doc[]).map((e) => ({
              enemy_id: e.enemy_id,
              name: e.name,
              status: e.status,
              weapon: e.weapon ?? null,
              traits: e.traits ?? [],
              metadata: e.metadata ?? null,
            })),
            player_conditions: raw.player_conditions ?? null,
          };
          c.doc.combat_state = state;
          this.#touch(c);
          return { status: 200, body: { active: isActive(state), state: structuredClone(state) } };
        }),
      },
      {
        method: "GET",
        route: `${character}/combat`,
        user: "optional",
        success: 200,
        handle: owned((c) => {
          const active = isActive(c.doc.combat_state);
          return {
            status: 200,
            body: { active, state: active ? structuredClone(c.doc.combat_state) : null },
          };
        }),
      },
    ];
  }

  /** Up to `n` POIs sampled without replacement. */
  #sample(pois: readonly FakePoi[], n: number): FakePoi[] {
    const pool = [...pois];
    const out: FakePoi[] = [];
    while (out.length < n && pool.length > 0) {
      out.push(pool.splice(Math.floor(this.#random() * pool.length), 1)[0]);
    }
    return out;
  }
}
