/**
 * What the server should answer to a generated request, decided with the
 * server's own building blocks (the router, the zod schemas, the SSE cursor
 * parser) so that a generator can tell an input it meant to be invalid from
 * one that happens to be valid — and throw the valid one away rather than
 * create a character or a turn.
 */
import type { z } from "zod";
import { Router } from "../../src/http/router.ts";
import { IdempotencyKey, uuid } from "../../src/http/schemas.ts";
import { MAX_BODY_BYTES } from "../../src/http/body.ts";
import type { ErrorType } from "../../src/shared/errors.ts";
import { afterSeq } from "../../plugins/sse/mod.ts";

/** What a request should get. */
export type Expectation =
  /** An error in the envelope; `types` null means any catalogue 4xx. */
  | { kind: "error"; types: readonly ErrorType[] | null }
  /** A documented success that the case sends on purpose. */
  | { kind: "ok"; status: number }
  /**
   * A raw request the HTTP parser may refuse before the app sees it (a bare
   * 400 or a closed connection); if the app answers, with one of `types`.
   */
  | { kind: "protocol"; types: readonly ErrorType[] | null }
  /** A WebSocket handshake Deno may accept (101) or the app may refuse. */
  | { kind: "upgrade"; types: readonly ErrorType[] | null };

/** Shorthand for an error expectation. */
export const err = (...types: ErrorType[]): Expectation => ({
  kind: "error",
  types: types.length ? types : null,
});

/** Facts about the server under test that the oracle needs. */
export interface FuzzWorld {
  /** The base URL, e.g. `http://127.0.0.1:1234`. */
  base: string;
  /** Characters created in the setup (lower case). */
  characters: string[];
  /** Turns played in the setup (lower case). */
  turns: string[];
  adminToken: string;
  /** Assets of the web plugin under /static/ (empty without it). */
  webAssets: string[];
  /** Whether the web plugin (`GET /`, `/static/:name`) is loaded. */
  web: boolean;
  /** Whether `/metrics` is registered. */
  metrics: boolean;
  /** The user a WebSocket plays as (`local` without auth). */
  wsUser?: string;
}

/** Route patterns of the server under test, mirrored with the real Router class. */
export function mirrorRouter(world: FuzzWorld): Router {
  const router = new Router();
  const none = () => new Response(null);
  const routes: [string, string][] = [
    ["GET", "/health"],
    ["GET", "/ready"],
    ["POST", "/characters"],
    ["GET", "/characters/:id"],
    ["POST", "/turn"],
    ["GET", "/turns/:id"],
    ["PUT", "/admin/policy"],
    ["GET", "/admin/policy"],
    ["POST", "/turn/stream"],
    ["GET", "/turns/:id/events"],
    ["GET", "/ws"],
  ];
  if (world.metrics) routes.push(["GET", "/metrics"]);
  if (world.web) routes.push(["GET", "/"], ["GET", "/static/:name"]);
  for (const [method, pattern] of routes) router.add(method, pattern, none);
  return router;
}

/** The method as fetch sends it (it upper-cases the six standard ones). */
export function fetchMethod(method: string): string {
  const upper = method.toUpperCase();
  return ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"].includes(upper) ? upper : method;
}

/** The path the server routes on, after URL parsing (dot segments, `\`). */
export function routedPath(base: string, target: string): string {
  return new URL(base + target).pathname;
}

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\b/i;
const strict = new TextDecoder("utf-8", { fatal: true });

/** The verdict on a body, in the order `readJson` checks it. */
export type BodyVerdict = { valid: true; data: unknown } | { valid: false; type: ErrorType };

/** Judge a JSON body exactly as `readJson` would (content type, size, UTF-8, JSON, schema). */
export function judgeBody(
  bytes: Uint8Array | null,
  contentType: string | null,
  schema: z.ZodType,
): BodyVerdict {
  if (contentType !== null && !JSON_TYPE.test(contentType.trim())) {
    return { valid: false, type: "unsupported_media_type" };
  }
  const body = bytes ?? new Uint8Array(0);
  if (body.byteLength > MAX_BODY_BYTES) return { valid: false, type: "payload_too_large" };
  let value: unknown;
  try {
    value = JSON.parse(strict.decode(body));
  } catch {
    return { valid: false, type: "validation_error" };
  }
  const parsed = schema.safeParse(value);
  return parsed.success
    ? { valid: true, data: parsed.data }
    : { valid: false, type: "validation_error" };
}

/** HTTP strips leading and trailing spaces and tabs from header values. */
export function headerAsSeen(value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, "");
}

/** Whether an Idempotency-Key header value passes validation. */
export function validIdempotencyKey(value: string): boolean {
  return IdempotencyKey.safeParse(headerAsSeen(value)).success;
}

/** Whether a path id passes `pathId`. */
export function validId(value: string | undefined): boolean {
  return uuid.safeParse(value).success;
}

/** Whether an admin Authorization header would be accepted. */
export function adminAuthOk(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const m = /^Bearer +(\S+) *$/i.exec(headerAsSeen(header));
  return m !== null && m[1] === token;
}

/**
 * The SSE cursor verdict for a request: null when valid, or the error.
 * Uses the plugin's own parser on an equivalent Request.
 */
export function cursorError(url: string, headers: [string, string][]): ErrorType | null {
  const h = new Headers();
  for (const [k, v] of headers) {
    try {
      h.append(k, v);
    } catch {
      // A value fetch cannot carry; the raw sender sends it and the server
      // sees something that is certainly not a seq.
      if (k.toLowerCase() === "last-event-id") return "validation_error";
    }
  }
  try {
    afterSeq(new Request(url, { headers: h }), new URL(url));
    return null;
  } catch {
    return "validation_error";
  }
}
