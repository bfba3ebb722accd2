/**
 * A small method + URLPattern router. Unknown paths answer `not_found`, known
 * paths with another method answer `method_not_allowed`, both in the error
 * envelope.
 *
 * @module
 */

/** Per-request facts handed to every route. */
export interface RequestInfo {
  /** From `X-Request-Id` (sanitised) or generated. */
  readonly requestId: string;
  /** The authenticated user id (`local` without auth). */
  readonly userId: string;
  /** Client address, for per-IP limits. */
  readonly remoteAddr: string;
  /** The route pattern that matched, for metrics (never the raw path). */
  route: string;
}

/** A route handler. Throw a `DmError` to answer with the error envelope. */
export type RouteHandler = (
  request: Request,
  params: Record<string, string | undefined>,
  info: RequestInfo,
) => Response | Promise<Response>;

interface Route {
  method: string;
  pattern: URLPattern;
  source: string;
  handler: RouteHandler;
}

/** Result of matching a request. */
export type RouteMatch =
  | {
    kind: "found";
    handler: RouteHandler;
    params: Record<string, string | undefined>;
    route: string;
  }
  | { kind: "method_not_allowed"; allow: string[]; route: string }
  | { kind: "not_found" };

/** The route table. */
export class Router {
  #routes: Route[] = [];

  /** Add a route; a duplicate method + pattern is a start-up error. */
  add(method: string, pattern: string, handler: RouteHandler): void {
    if (this.#routes.some((r) => r.method === method && r.source === pattern)) {
      throw new Error(`Route ${method} ${pattern} is registered twice`);
    }
    this.#routes.push({
      method,
      pattern: new URLPattern({ pathname: pattern }),
      source: pattern,
      handler,
    });
  }

  /** Find the handler for a method and path. */
  match(method: string, pathname: string): RouteMatch {
    const allow: string[] = [];
    let route = "";
    for (const r of this.#routes) {
      const m = r.pattern.exec({ pathname });
      if (!m) continue;
      if (r.method === method || (method === "HEAD" && r.method === "GET")) {
        return { kind: "found", handler: r.handler, params: m.pathname.groups, route: r.source };
      }
      allow.push(r.method);
      route = r.source;
    }
    return allow.length > 0 ? { kind: "method_not_allowed", allow, route } : { kind: "not_found" };
  }
}
