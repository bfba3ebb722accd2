/**
 * What every request of one client shares: where the server is, how to
 * authenticate, and which `fetch`/`WebSocket` to use.
 *
 * @module
 */
import type { RetryPolicy } from "./backoff.ts";

/** A `fetch`-compatible function. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** A `WebSocket`-compatible constructor. */
export type WebSocketLike = new (url: string | URL, protocols?: string | string[]) => WebSocket;

/** A bearer token, or a function returning the current one (for refresh). */
export type TokenSource = string | (() => string | null | Promise<string | null>);

/** Resolved client settings, shared by the transports. */
export interface ClientContext {
  /** Base URL, always ending in "/" so paths resolve under any prefix. */
  base: URL;
  fetch: FetchLike;
  WebSocket: WebSocketLike | null;
  token: () => Promise<string | null>;
  retry: RetryPolicy;
  /** Silence after which a connection is presumed dead and resumed. */
  idleTimeoutMs: number;
}

/** Resolve a path (`"turn/stream"`) against the base URL. */
export function endpoint(ctx: ClientContext, path: string): URL {
  return new URL(path.replace(/^\/+/, ""), ctx.base);
}

/** Request headers with the bearer token, if there is one. */
export async function authHeaders(
  ctx: ClientContext,
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  const token = await ctx.token();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}
