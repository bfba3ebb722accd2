/**
 * Generated HTTP requests, one family per route (and families for methods,
 * unknown routes, probes, the game page and CORS preflights). Every case
 * carries what the server must answer, decided by the oracle; a case the
 * oracle finds valid is thrown away and drawn again, so the fuzz never
 * creates a character or plays a turn.
 */
import { CreateCharacterBody, TurnBody } from "../../src/http/schemas.ts";
import { PolicyConfigSchema } from "../../plugins/policy/mod.ts";
import type { Router } from "../../src/http/router.ts";
import { type Fields, mutatedBody } from "./bodies.ts";
import {
  adminAuthOk,
  cursorError,
  err,
  type Expectation,
  fetchMethod,
  type FuzzWorld,
  judgeBody,
  routedPath,
  validId,
  validIdempotencyKey,
} from "./oracle.ts";
import type { Rng } from "./prng.ts";
import { fetchable } from "./send.ts";
import {
  badContentType,
  badId,
  badIdempotencyKey,
  bogusTraceparent,
  bytesFrom,
  requestIdValue,
  unknownUuid,
} from "./values.ts";

/** One generated request. */
export interface HttpCase {
  /** Index in generation order. */
  n: number;
  /** Route or transport family, for the counts. */
  family: string;
  /** What the generator did, for failure messages. */
  note: string;
  method: string;
  /** Request target (path and query) as it goes on the wire. */
  target: string;
  headers: [string, string][];
  body: Uint8Array<ArrayBuffer> | null;
  /** Send the body chunked (a stream, no Content-Length). */
  chunked?: boolean;
  /** How it is sent: fetch, or raw TCP for what fetch refuses. */
  via: "fetch" | "raw";
  /** Complete raw request bytes (raw family only). */
  raw?: Uint8Array<ArrayBuffer>;
  expect: Expectation;
  /** Extra check of a successful answer's body; returns a problem or null. */
  okCheck?: (body: string) => string | null;
}

type Draft = Omit<HttpCase, "n" | "via" | "expect">;
type Judge = (route: string, params: Record<string, string | undefined>) => Expectation | "valid";

/** Percent-encode what would change the URL's structure (`#`, `?`) in a path segment. */
export function seg(value: string): string {
  return value.replace(/#/g, "%23").replace(/\?/g, "%3F");
}

/** Shared state of one generation run. */
export class CaseFactory {
  readonly cases: HttpCase[] = [];
  /** Drafts thrown away because they were valid (or routed somewhere valid). */
  discarded = 0;

  constructor(readonly rng: Rng, readonly world: FuzzWorld, readonly router: Router) {}

  /**
   * Route a draft through the mirror router and its judge; null when the
   * request would be valid (the caller draws another).
   */
  finish(draft: Draft, judge: Judge): HttpCase | null {
    const method = fetchMethod(draft.method);
    let path: string;
    try {
      path = routedPath(this.world.base, draft.target);
    } catch {
      return null;
    }
    const m = this.router.match(method, path);
    let expect: Expectation;
    if (m.kind === "not_found") expect = err("not_found");
    else if (m.kind === "method_not_allowed") expect = err("method_not_allowed");
    else {
      const verdict = judge(m.route, m.params);
      if (verdict === "valid") return null;
      expect = verdict;
    }
    const via = draft.raw || !fetchable(draft) ? "raw" : "fetch";
    if (via === "raw" && expect.kind === "error") {
      expect = { kind: "protocol", types: expect.types };
    }
    const c: HttpCase = { ...draft, n: this.cases.length, via, expect };
    this.cases.push(c);
    return c;
  }

  /** Draw drafts until one is kept (at most 50 tries). */
  add(make: () => [Draft, Judge] | null): void {
    for (let i = 0; i < 50; i++) {
      const made = make();
      if (made && this.finish(made[0], made[1])) return;
      this.discarded++;
    }
    throw new Error("fuzz generator: 50 drafts in a row were valid");
  }

  /** Random harmless-or-hostile headers every route must tolerate. */
  noise(headers: [string, string][] = []): [string, string][] {
    const r = this.rng;
    if (r.chance(0.3)) headers.push(["X-Request-Id", requestIdValue(r)]);
    if (r.chance(0.15)) headers.push(["traceparent", bogusTraceparent(r)]);
    if (r.chance(0.1)) headers.push(["Origin", r.pick(["https://evil.example", "null", "*"])]);
    if (r.chance(0.05)) headers.push(["Accept", r.pick(["text/event-stream", "*/*;q=x", ""])]);
    if (r.chance(0.05)) headers.push(["Last-Event-ID", r.pick(["-1", "x", "1"])]);
    return headers;
  }

  #charId(): string {
    const r = this.rng;
    return r.oneOf<string>([
      () => r.pick(this.world.characters),
      () => r.pick(this.world.characters).toUpperCase(),
      () => unknownUuid(r),
      () => badId(r),
    ]);
  }

  #contentType(): string | null {
    const r = this.rng;
    return r.oneOf<string | null>([
      () => null,
      () => "application/json",
      () => "application/json; charset=utf-8",
      () => "APPLICATION/JSON",
      () => "application/vnd.dm+json",
      () => badContentType(r),
    ]);
  }

  // ------------------------------------------------------------- families

  /** `POST /characters` with a body that must be refused. */
  characters(): void {
    const r = this.rng;
    this.add(() => {
      const template: Fields = [
        ["name", '"Aria"'],
        ["race", '"Elf"'],
        ["class_name", '"Ranger"'],
        ["custom_prompt", '"A rain-soaked gothic kingdom."'],
      ];
      const { body, note } = mutatedBody(r, template, {
        name: 100,
        race: 50,
        class_name: 50,
        custom_prompt: 2000,
      });
      const ct = this.#contentType();
      const headers = this.noise(ct === null ? [] : [["Content-Type", ct]]);
      const chunked = r.chance(0.05);
      return [
        {
          family: "POST /characters",
          note,
          method: "POST",
          target: "/characters",
          headers,
          body,
          chunked,
        },
        () => {
          const v = judgeBody(body, ct, CreateCharacterBody);
          return v.valid ? "valid" : err(v.type);
        },
      ];
    });
  }

  /** `POST /turn` or `POST /turn/stream`: bad keys, content types or bodies. */
  turn(path: "/turn" | "/turn/stream"): void {
    const r = this.rng;
    this.add(() => {
      const focus = r.pick(["key", "type", "body", "body", "body"]);
      const template: Fields = [
        ["character_id", JSON.stringify(this.#charId())],
        ["user_action", JSON.stringify(r.pick(["I open the door", "I look around"]))],
      ];
      let body = bytesFrom(
        JSON.stringify(Object.fromEntries(template.map(([k, v]) => [k, JSON.parse(v as string)]))),
      );
      let note = focus;
      const headers: [string, string][] = [];
      let ct: string | null = r.chance(0.5) ? "application/json" : null;
      if (focus === "key") headers.push(["Idempotency-Key", badIdempotencyKey(r)]);
      else if (r.chance(0.3)) headers.push(["Idempotency-Key", `fuzz-${r.int(0, 1e9)}`]);
      if (focus === "type") ct = badContentType(r);
      if (focus === "body") {
        const m = mutatedBody(r, template, { character_id: 36, user_action: 8000 });
        body = m.body;
        note = m.note;
        if (r.chance(0.15)) ct = this.#contentType();
      }
      if (ct !== null) headers.push(["Content-Type", ct]);
      this.noise(headers);
      const key = headers.find(([k]) => k === "Idempotency-Key")?.[1];
      return [
        {
          family: `POST ${path}`,
          note,
          method: "POST",
          target: path,
          headers,
          body,
          chunked: r.chance(0.05),
        },
        () => {
          if (key !== undefined && !validIdempotencyKey(key)) return err("validation_error");
          const v = judgeBody(body, ct, TurnBody);
          if (!v.valid) return err(v.type);
          const id = (v.data as { character_id: string }).character_id;
          return this.world.characters.includes(id) ? "valid" : err("character_not_found");
        },
      ];
    });
  }

  /** `GET /characters/{id}` or `GET /turns/{id}` with malformed or unknown ids. */
  getById(kind: "characters" | "turns"): void {
    const r = this.rng;
    const known = kind === "characters" ? this.world.characters : this.world.turns;
    const missing = kind === "characters" ? "character_not_found" : "turn_not_found";
    this.add(() => {
      const id = r.chance(0.6) ? badId(r) : unknownUuid(r);
      const method = r.chance(0.85) ? "GET" : "HEAD";
      return [
        {
          family: `GET /${kind}/{id}`,
          note: `id=${JSON.stringify(id.slice(0, 60))}`,
          method,
          target: `/${kind}/${seg(id)}`,
          headers: this.noise(),
          body: null,
        },
        (route, params) => {
          // Dot segments can route elsewhere (e.g. to the game page); those
          // are the unknown-routes family's business.
          if (route !== `/${kind}/:id`) return "valid";
          if (!validId(params.id)) return err("validation_error");
          return known.includes(params.id!.toLowerCase()) ? "valid" : err(missing);
        },
      ];
    });
  }

  /** `GET /turns/{id}/events` with bad ids, `Last-Event-ID` or `?after=`. */
  events(): void {
    const r = this.rng;
    const badCursor = () =>
      r.pick([
        "-1",
        "-0",
        "1.5",
        "1e3",
        "abc",
        "0x10",
        "+1",
        "NaN",
        "Infinity",
        "9".repeat(16),
        "99999999999999999999999",
        "1 2",
        "1,2",
        "\uff11",
        "\u0661",
        "١٢",
        "%31",
        "0-",
        "null",
        "[]",
      ]);
    const goodCursor = () => r.pick(["0", "1", "3", "999999999999999"]);
    this.add(() => {
      const id = r.oneOf<string>([
        () => r.pick(this.world.turns),
        () => r.pick(this.world.turns).toUpperCase(),
        () => unknownUuid(r),
        () => badId(r),
      ]);
      const headers: [string, string][] = [];
      const header = r.pick([undefined, undefined, "bad", "good", "blank"]);
      if (header === "bad") headers.push(["Last-Event-ID", badCursor()]);
      if (header === "good") headers.push(["Last-Event-ID", goodCursor()]);
      if (header === "blank") headers.push(["Last-Event-ID", r.pick(["", " ", "\t"])]);
      const query: string[] = [];
      const after = r.pick([undefined, "bad", "bad", "good"]);
      if (after === "bad") query.push(`after=${encodeURIComponent(badCursor())}`);
      if (after === "good") query.push(`after=${goodCursor()}`);
      if (r.chance(0.1)) query.push(`after=${encodeURIComponent(badCursor())}`);
      if (r.chance(0.05)) query.push("access_token=garbage");
      this.noise(headers);
      const target = `/turns/${seg(id)}/events${query.length ? `?${query.join("&")}` : ""}`;
      return [
        {
          family: "GET /turns/{id}/events",
          note: `id=${JSON.stringify(id.slice(0, 40))} header=${header} after=${after}`,
          method: "GET",
          target,
          headers,
          body: null,
        },
        (route, params) => {
          if (route !== "/turns/:id/events") return "valid";
          if (!validId(params.id)) return err("validation_error");
          if (cursorError(this.world.base + target, headers)) return err("validation_error");
          return this.world.turns.includes(params.id!.toLowerCase())
            ? "valid"
            : err("turn_not_found");
        },
      ];
    });
  }

  #badAdminAuth(): string | undefined {
    const r = this.rng;
    const t = this.world.adminToken;
    return r.pick([
      undefined,
      "",
      "Bearer",
      "Bearer ",
      "Bearer wrong",
      `Basic ${btoa(`admin:${t}`)}`,
      `Bearer ${t}x`,
      `Bearer x${t}`,
      `Bearer ${t.toUpperCase()}`,
      `Token ${t}`,
      `Bearer\t${t}`,
      `Bearer ${t} extra`,
      `Bearer ${t}, Bearer ${t}`,
      `Bearer ${t}\u00e9`,
      `Bearer ${t.slice(0, -1)}`,
      `Bearer ${"a".repeat(10000)}`,
      `${t}`,
      `Bearer ${t}\u0000`,
    ]);
  }

  /** `GET /admin/policy` without the admin token. */
  adminGet(): void {
    const r = this.rng;
    this.add(() => {
      const auth = this.#badAdminAuth();
      const headers = this.noise(auth === undefined ? [] : [["Authorization", auth]]);
      return [
        {
          family: "GET /admin/policy",
          note: `auth=${JSON.stringify(auth?.slice(0, 40))}`,
          method: r.chance(0.9) ? "GET" : "HEAD",
          target: "/admin/policy",
          headers,
          body: null,
        },
        () => adminAuthOk(auth, this.world.adminToken) ? "valid" : err("unauthorized"),
      ];
    });
  }

  /** `PUT /admin/policy` with a bad token or an invalid policy. */
  adminPut(policy: Record<string, number>): void {
    const r = this.rng;
    this.add(() => {
      const auth = r.chance(0.75) ? `Bearer ${this.world.adminToken}` : this.#badAdminAuth();
      const template: Fields = Object.entries(policy).map(([k, v]) => [k, JSON.stringify(v)]);
      const { body, note } = mutatedBody(r, template, {}, { numeric: true });
      const ct = this.#contentType();
      const headers: [string, string][] = [];
      if (auth !== undefined) headers.push(["Authorization", auth]);
      if (ct !== null) headers.push(["Content-Type", ct]);
      this.noise(headers);
      return [
        {
          family: "PUT /admin/policy",
          note: `${note} auth=${JSON.stringify(auth?.slice(0, 20))}`,
          method: "PUT",
          target: "/admin/policy",
          headers,
          body,
        },
        () => {
          if (!adminAuthOk(auth, this.world.adminToken)) return err("unauthorized");
          const v = judgeBody(body, ct, PolicyConfigSchema);
          return v.valid ? "valid" : err(v.type);
        },
      ];
    });
  }

  /** `GET /ws` as a plain request (no or a wrong upgrade). */
  wsHttp(): void {
    const r = this.rng;
    this.add(() => {
      const headers: [string, string][] = [];
      const upgrade = r.pick([undefined, "h2c", "websocket2", "", "web socket", "TLS/1.0"]);
      if (upgrade !== undefined) headers.push(["Upgrade", upgrade], ["Connection", "Upgrade"]);
      if (r.chance(0.3)) {
        headers.push(["Sec-WebSocket-Key", r.pick(["", "!!", "dGhlIHNhbXBsZSBub25jZQ=="])]);
      }
      if (r.chance(0.3)) headers.push(["Sec-WebSocket-Version", r.pick(["13", "8", "99", "x"])]);
      this.noise(headers);
      return [
        {
          family: "GET /ws (HTTP)",
          note: `upgrade=${upgrade}`,
          method: "GET",
          target: r.pick(["/ws", "/ws?x=1", "/ws?access_token=garbage"]),
          headers,
          body: null,
        },
        () => err("validation_error"),
      ];
    });
  }

  #knownPaths(): string[] {
    const c = this.world.characters[0];
    const t = this.world.turns[0];
    return [
      "/characters",
      `/characters/${c}`,
      "/turn",
      "/turn/stream",
      `/turns/${t}`,
      `/turns/${t}/events`,
      "/ws",
      "/health",
      "/ready",
      "/metrics",
      "/admin/policy",
      "/",
      "/static/app.css",
    ];
  }

  /** Every known path with methods it does not take. */
  methods(): void {
    const r = this.rng;
    this.add(() => {
      const target = r.pick(this.#knownPaths());
      const method = r.pick([
        "PUT",
        "PATCH",
        "DELETE",
        "POST",
        "GET",
        "HEAD",
        "OPTIONS",
        "FOO",
        "PROPFIND",
        "MKCOL",
        "LOCK",
        "COPY",
        "MOVE",
        "SEARCH",
        "QUERY",
        "PURGE",
        "patch",
        "delete",
        "M-SEARCH",
        "X".repeat(100),
        "TRACE",
        "CONNECT",
      ]);
      const c = this.world.characters[0];
      const body = ["GET", "HEAD"].includes(fetchMethod(method)) || r.chance(0.5)
        ? null
        : bytesFrom(
          JSON.stringify({
            character_id: c,
            user_action: "I wait",
            name: "X",
            race: "Y",
            class_name: "Z",
          }),
        );
      const headers = this.noise(body ? [["Content-Type", "application/json"]] : []);
      if (target === "/admin/policy" && r.chance(0.5)) {
        headers.push(["Authorization", `Bearer ${this.world.adminToken}`]);
      }
      return [
        { family: "methods", note: `${method} ${target}`, method, target, headers, body },
        () => "valid",
      ];
    });
  }

  /** Paths that are no route (or a route with another method). */
  unknownRoutes(): void {
    const r = this.rng;
    const u = () => r.uuid();
    this.add(() => {
      const target = r.oneOf<string>([
        () =>
          r.pick([
            "/.env",
            "/.git/config",
            "/wp-login.php",
            "/admin",
            "/admin/",
            "/admin/policy/",
            "/admin/policy/x",
            "/admin/users",
            "/api/turn",
            "/turn/",
            "/turn/stream/",
            "/turns",
            "/turns/",
            "/characters/",
            "/character",
            "/v2/characters",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/static",
            "/static/",
            "/static/a/b",
            "/metrics/x",
            "/health/x",
            "//health",
            "/HEALTH",
            "/Health",
            "/health%00",
            "/health;x",
            "/ws/",
            "/ws/x",
            "/%77s",
            "/turns//events",
            "/%",
            "/\u00e9",
            "/😀",
            "/server-status",
            "/index.html",
          ]),
        () => `/turns/${u()}/events/x`,
        () => `/turns/${u()}/Events`,
        () => `/CHARACTERS/${u()}`,
        () => `/characters/${u()}/turns`,
        () => `/characters/${u()}/`,
        () => `/${r.string(r.int(1, 30), "abcxyz/._-~%")}`,
        () => `/${"a/".repeat(r.int(10, 2000))}`,
        () => `/${"x".repeat(r.int(1000, 20000))}`,
      ]);
      const method = r.pick([
        "GET",
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "PATCH",
        "HEAD",
        "OPTIONS",
        "BREW",
      ]);
      return [
        {
          family: "unknown routes",
          note: `${method} ${target.slice(0, 60)}`,
          method,
          target,
          headers: this.noise(),
          body: null,
        },
        () => "valid",
      ];
    });
  }

  /** The game page routes: unknown or prototype-named static files. */
  web(): void {
    const r = this.rng;
    this.add(() => {
      const name = r.pick([
        "toString",
        "constructor",
        "__proto__",
        "hasOwnProperty",
        "valueOf",
        "isPrototypeOf",
        "index.html",
        "APP.JS",
        "app.js.map",
        "app.js%00",
        "app%2ejs",
        "..%2fmod.ts",
        "%2e%2e%2fmod.ts",
        "app.ts",
        "dom.ts",
        "client.ts",
        "app.css%20",
        ".",
        "%2e",
        "😀.js",
        "x".repeat(5000),
        "app.css;.js",
      ]);
      const method = r.pick(["GET", "GET", "GET", "HEAD"]);
      return [
        {
          family: "GET /static/{name}",
          note: `name=${name.slice(0, 40)}`,
          method,
          target: `/static/${seg(name)}`,
          headers: this.noise(r.chance(0.2) ? [["If-None-Match", r.pick(['"x"', "*", ""])]] : []),
          body: null,
        },
        (route, params) => {
          if (route === "/static/:name") {
            return this.world.webAssets.includes(params.name ?? "") ? "valid" : err("not_found");
          }
          return "valid";
        },
      ];
    });
  }

  /** A CORS preflight: documented 204 (CORS is off, so without CORS headers). */
  preflight(): void {
    const r = this.rng;
    this.add(() => {
      const target = r.pick(this.#knownPaths().concat(["/nowhere"]));
      const headers: [string, string][] = [
        ["Access-Control-Request-Method", r.pick(["POST", "PUT", "DELETE", "FOO"])],
        ["Origin", "https://evil.example"],
      ];
      return [
        {
          family: "OPTIONS preflight",
          note: target,
          method: "OPTIONS",
          target,
          headers,
          body: null,
        },
        () => ({ kind: "ok", status: 204 }),
      ];
    });
    // Preflights are answered before routing, so the router's verdict does not apply.
    const last = this.cases[this.cases.length - 1];
    last.expect = { kind: "ok", status: 204 };
    last.okCheck = (body) => (body === "" ? null : "a preflight has no body");
  }

  /** Documented valid variants: ids in upper case answer the lower-case resource. */
  upperCaseIds(): void {
    for (
      const [kind, id] of [["characters", this.world.characters[0]], ["turns", this.world.turns[0]]]
    ) {
      const target = `/${kind}/${id.toUpperCase()}`;
      this.cases.push({
        n: this.cases.length,
        family: `GET /${kind}/{id}`,
        note: "upper-case id (valid)",
        method: "GET",
        target,
        headers: [],
        body: null,
        via: "fetch",
        expect: { kind: "ok", status: 200 },
        okCheck: (body) => {
          const json = JSON.parse(body);
          const got = kind === "characters" ? json.character_id : json.turn_id;
          return got === id ? null : `answered ${got}, not the lower-case ${id}`;
        },
      });
    }
  }
}
