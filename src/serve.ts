/**
 * Serving an {@link App} with `Deno.serve`, and shutting it down cleanly:
 * stop accepting, let running turns finish up to the grace deadline, close
 * plugins in reverse order and then the store.
 *
 * @module
 */
import type { App } from "./app.ts";

/** A running server. */
export interface RunningServer {
  /** The bound port (useful with port 0). */
  port: number;
  hostname: string;
  /** Base URL such as `http://127.0.0.1:8080`. */
  url: string;
  /** Graceful shutdown; safe to call twice. */
  shutdown(): Promise<void>;
  /** Resolves when the listener has closed. */
  finished: Promise<void>;
}

/** Serve the app on `hostname:port` (port 0 picks a free port). */
export function serveApp(app: App, hostname: string, port: number): Promise<RunningServer> {
  const server = Deno.serve({ hostname, port, onListen: () => {} }, (request, info) => {
    const addr = info.remoteAddr as Deno.NetAddr;
    return app.handler(request, addr.hostname ?? "unknown");
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopping: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      // Closing the app first lets in-flight streams finish their turns;
      // server.shutdown then waits for those responses to end.
      await app.close();
      await server.shutdown();
    })();
    return stopping;
  };
  return Promise.resolve({
    port: addr.port,
    hostname: addr.hostname,
    url: `http://${host}:${addr.port}`,
    shutdown,
    finished: server.finished,
  });
}
