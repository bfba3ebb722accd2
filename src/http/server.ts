/**
 * The HTTP front door: request ids, authentication hook, routing, error
 * envelopes, security headers, access logs and request metrics. Route
 * handlers only deal with their own work.
 *
 * @module
 */
import { DmError, envelope, toDmError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { dmMetrics } from "../telemetry/metrics.ts";
import type { RequestInfo, Router } from "./router.ts";

/** Decides who is calling; throws `unauthorized` to refuse. */
export type Authenticator = (request: Request, url: URL) => Promise<string> | string;

/** Options of the front door. */
export interface FrontDoorOptions {
  router: Router;
  logger: Logger;
  authenticate?: Authenticator;
  /** Paths that need no authentication (health probes, static page). */
  publicPaths?: (pathname: string) => boolean;
  /** Origins allowed by CORS; empty (the default) turns CORS off. `*` allows any. */
  corsOrigins?: readonly string[];
}

const CORS_ALLOW_HEADERS =
  "Content-Type, Authorization, Idempotency-Key, Last-Event-ID, traceparent, tracestate, X-Request-Id";
const CORS_EXPOSE_HEADERS = "X-Turn-Id, X-Request-Id, Retry-After";

function corsHeaders(
  origin: string | null,
  allowed: readonly string[],
): Record<string, string> | null {
  if (origin === null || allowed.length === 0) return null;
  if (!allowed.includes("*") && !allowed.includes(origin)) return null;
  return {
    "Access-Control-Allow-Origin": origin,
    "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS,
    "Vary": "Origin",
  };
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Headers added to every response. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "Content-Security-Policy": "frame-ancestors 'none'",
  "Referrer-Policy": "no-referrer",
};

/** Answer an error in the documented envelope. */
export function errorResponse(error: DmError, requestId: string | null): Response {
  const headers = new Headers({ "Content-Type": "application/json", ...error.headers });
  if (error.type === "unauthorized" && !headers.has("WWW-Authenticate")) {
    headers.set("WWW-Authenticate", 'Bearer realm="dungeon-master"');
  }
  return new Response(JSON.stringify(envelope(error, requestId)), {
    status: error.status,
    headers,
  });
}

function withHeaders(
  response: Response,
  requestId: string,
  cors: Record<string, string> | null = null,
): Response {
  try {
    response.headers.set("X-Request-Id", requestId);
    for (const [k, v] of Object.entries({ ...SECURITY_HEADERS, ...cors })) {
      if (!response.headers.has(k)) response.headers.set(k, v);
    }
    return response;
  } catch {
    // Responses such as WebSocket upgrades have immutable headers.
    return response;
  }
}

/** Build the `Deno.serve` handler. */
export function createHandler(options: FrontDoorOptions) {
  const { router, logger } = options;
  return async (request: Request, remoteAddr: string): Promise<Response> => {
    const started = performance.now();
    const given = request.headers.get("x-request-id");
    const requestId = given && SAFE_REQUEST_ID.test(given) ? given : crypto.randomUUID();
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return withHeaders(errorResponse(new DmError("not_found"), requestId), requestId);
    }
    const info: RequestInfo = { requestId, userId: "local", remoteAddr, route: "unmatched" };
    const cors = corsHeaders(request.headers.get("origin"), options.corsOrigins ?? []);
    if (request.method === "OPTIONS" && request.headers.has("access-control-request-method")) {
      // A CORS preflight; without an allowed origin it gets no CORS headers
      // and the browser refuses the real request.
      return withHeaders(
        new Response(null, {
          status: 204,
          headers: cors
            ? {
              "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
              "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
              "Access-Control-Max-Age": "600",
            }
            : {},
        }),
        requestId,
        cors,
      );
    }
    let response: Response;
    try {
      const match = router.match(request.method, url.pathname);
      if (match.kind === "not_found") throw new DmError("not_found", "No such route.");
      info.route = match.route;
      if (match.kind === "method_not_allowed") {
        throw new DmError("method_not_allowed", `Use ${match.allow.join(", ")} on this route.`, {
          headers: { Allow: match.allow.join(", ") },
        });
      }
      if (options.authenticate && !options.publicPaths?.(url.pathname)) {
        (info as { userId: string }).userId = await options.authenticate(request, url);
      }
      response = await match.handler(request, match.params, info);
    } catch (e) {
      const error = toDmError(e);
      if (error.type === "internal_error") {
        logger.error("request_failed", { request_id: requestId, route: info.route, error: e });
      }
      response = errorResponse(error, requestId);
    }
    dmMetrics.httpRequest(info.route, response.status);
    logger.info("request", {
      request_id: requestId,
      method: request.method,
      route: info.route,
      status: response.status,
      duration_ms: Math.round((performance.now() - started) * 100) / 100,
    });
    return withHeaders(response, requestId, cors);
  };
}
