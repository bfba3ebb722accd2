/**
 * The `DM_AUTH=jwt` slice: bad `Authorization` headers and `?access_token=`
 * values on every authenticated route, tokens that are forged, expired,
 * unsigned, oversized or subject-less, and valid tokens of another user
 * (who must see 404s, exactly like missing resources).
 */
import { SignJWT } from "jose";
import { err, type Expectation } from "./oracle.ts";
import type { Rng } from "./prng.ts";
import { bytesFrom } from "./values.ts";

/** Fixed times, so one seed gives byte-identical tokens. */
const FAR_FUTURE = 4_102_444_800; // 2100-01-01
const PAST = 1_000_000_000; // 2001

function b64url(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

async function sign(
  secret: string,
  claims: Record<string, unknown>,
  alg = "HS256",
): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg }).sign(
    new TextEncoder().encode(secret),
  );
}

/** Valid and invalid tokens for the slice. */
export interface JwtTokens {
  /** The user who owns the setup character. */
  alice: string;
  /** A valid token of another user. */
  mallory: string;
  /** Tokens the server must refuse with 401. */
  invalid: [string, string][];
}

/** Make the tokens (deterministic: fixed claims and times). */
export async function makeTokens(secret: string): Promise<JwtTokens> {
  const alice = await sign(secret, { sub: "alice", exp: FAR_FUTURE, iat: PAST });
  const mallory = await sign(secret, { sub: "mallory", exp: FAR_FUTURE, iat: PAST });
  const [head, payload, sig] = alice.split(".");
  const invalid: [string, string][] = [
    ["wrong secret", await sign(`${secret}-not`, { sub: "alice", exp: FAR_FUTURE })],
    ["expired", await sign(secret, { sub: "alice", exp: PAST })],
    ["no exp", await sign(secret, { sub: "alice" })],
    ["no sub", await sign(secret, { exp: FAR_FUTURE })],
    ["empty sub", await sign(secret, { sub: "", exp: FAR_FUTURE })],
    ["long sub", await sign(secret, { sub: "s".repeat(300), exp: FAR_FUTURE })],
    ["numeric sub", await sign(secret, { sub: 123, exp: FAR_FUTURE })],
    ["string exp", await sign(secret, { sub: "alice", exp: "never" })],
    ["future nbf", await sign(secret, { sub: "alice", exp: FAR_FUTURE, nbf: FAR_FUTURE - 10 })],
    ["HS512", await sign(secret, { sub: "alice", exp: FAR_FUTURE }, "HS512")],
    ["alg none", `${b64url({ alg: "none", typ: "JWT" })}.${payload}.`],
    ["alg none no dot", `${b64url({ alg: "none" })}.${payload}`],
    ["tampered sub", `${head}.${b64url({ sub: "mallory", exp: FAR_FUTURE })}.${sig}`],
    ["truncated signature", `${head}.${payload}.${sig.slice(0, -4)}`],
    ["signature of another token", `${head}.${payload}.${mallory.split(".")[2]}`],
    ["four parts", `${alice}.x`],
    ["five parts (JWE-like)", "a.b.c.d.e"],
    ["empty parts", ".."],
    ["garbage", "eyJ.eyJ.sig"],
    ["over 8192 chars", `${head}.${"A".repeat(9000)}.${sig}`],
    ["header not JSON", `${btoa("nope")}.${payload}.${sig}`],
    [
      "jwk in header",
      `${b64url({ alg: "HS256", jwk: { kty: "oct", k: "AAAA" } })}.${payload}.${sig}`,
    ],
  ];
  return { alice, mallory, invalid };
}

/** One request of the slice. */
export interface JwtCase {
  family: string;
  note: string;
  method: string;
  target: string;
  headers: [string, string][];
  body: Uint8Array<ArrayBuffer> | null;
  expect: Expectation;
}

/** Known resources of the JWT server (owned by alice). */
export interface JwtWorld {
  character: string;
  turn: string;
  tokens: JwtTokens;
}

/** Generate `count` cases. */
export function jwtCases(rng: Rng, w: JwtWorld, count: number): JwtCase[] {
  const { tokens } = w;
  const turnBody = () =>
    bytesFrom(JSON.stringify({ character_id: w.character, user_action: "I wait" }));
  const charBody = () =>
    bytesFrom(JSON.stringify({ name: "Eve", race: "Elf", class_name: "Rogue" }));
  const routes: {
    family: string;
    method: string;
    target: string;
    body: () => Uint8Array<ArrayBuffer> | null;
    missing: Expectation;
  }[] = [
    {
      family: "jwt: POST /characters",
      method: "POST",
      target: "/characters",
      body: charBody,
      missing: err(),
    },
    {
      family: "jwt: GET /characters/{id}",
      method: "GET",
      target: `/characters/${w.character}`,
      body: () => null,
      missing: err("character_not_found"),
    },
    {
      family: "jwt: POST /turn",
      method: "POST",
      target: "/turn",
      body: turnBody,
      missing: err("character_not_found"),
    },
    {
      family: "jwt: POST /turn/stream",
      method: "POST",
      target: "/turn/stream",
      body: turnBody,
      missing: err("character_not_found"),
    },
    {
      family: "jwt: GET /turns/{id}",
      method: "GET",
      target: `/turns/${w.turn}`,
      body: () => null,
      missing: err("turn_not_found"),
    },
    {
      family: "jwt: GET /turns/{id}/events",
      method: "GET",
      target: `/turns/${w.turn}/events`,
      body: () => null,
      missing: err("turn_not_found"),
    },
    {
      family: "jwt: GET /admin/policy",
      method: "GET",
      target: "/admin/policy",
      body: () => null,
      missing: err("unauthorized"),
    },
    {
      family: "jwt: PUT /admin/policy",
      method: "PUT",
      target: "/admin/policy",
      body: () => bytesFrom("{}"),
      missing: err("unauthorized"),
    },
  ];
  const malformed = () =>
    rng.pick([
      "",
      "Bearer",
      "Bearer ",
      "Basic YWxpY2U6cGFzcw==",
      `Token ${tokens.alice}`,
      `${tokens.alice}`,
      `Bearer ${tokens.alice},`,
      `Bearer ${tokens.alice} ${tokens.alice}`,
      `Bearer ${tokens.alice}, Bearer ${tokens.alice}`,
      "Bearer tok*en",
      "Bearer ключ",
      "Bearer \u00e9",
      `Bearer "${tokens.alice}"`,
      `Bearer=${tokens.alice}`,
    ]);
  const out: JwtCase[] = [];
  while (out.length < count) {
    const r = rng.pick(routes);
    const headers: [string, string][] = [["Content-Type", "application/json"]];
    let target = r.target;
    let note: string;
    let expect: Expectation = err("unauthorized");
    const mode = rng.pick(["none", "malformed", "invalid", "invalid", "query", "mallory"]);
    if (mode === "malformed") {
      const h = malformed();
      headers.push(["Authorization", h]);
      note = `Authorization ${JSON.stringify(h.slice(0, 30))}`;
    } else if (mode === "invalid") {
      const [name, token] = rng.pick(tokens.invalid);
      headers.push(["Authorization", `Bearer ${token}`]);
      note = `token: ${name}`;
    } else if (mode === "query") {
      // ?access_token= is only for GET /turns/{id}/events: elsewhere even a
      // valid one is ignored, and on the events route an invalid one fails.
      const onEvents = r.target.endsWith("/events");
      const [name, token] = onEvents ? rng.pick(tokens.invalid) : ["alice (valid)", tokens.alice];
      target += `?access_token=${encodeURIComponent(token)}`;
      note = `?access_token= ${name}`;
      if (onEvents && rng.chance(0.3)) {
        headers.push(["Authorization", malformed()]);
        target = `${r.target}?access_token=${tokens.alice}`;
        note = "malformed header wins over a valid ?access_token=";
      }
    } else if (mode === "mallory") {
      if (r.family === "jwt: POST /characters") continue; // would create mallory's character
      headers.push(["Authorization", `Bearer ${tokens.mallory}`]);
      note = "another user's valid token";
      expect = r.missing;
    } else {
      note = "no credentials";
    }
    out.push({ family: r.family, note, method: r.method, target, headers, body: r.body(), expect });
  }
  return out;
}
