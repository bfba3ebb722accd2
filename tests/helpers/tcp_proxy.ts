/**
 * A TCP proxy for tests that need a real network cut: clients connect to
 * the proxy, which forwards bytes to the server and can sever connections,
 * either at once or when a pattern shows up in what the server sends.
 * Browsers and `fetch` then see a genuinely broken connection, not a
 * simulated one.
 *
 * @example
 * ```ts
 * const proxy = await startTcpProxy(server.server.port);
 * const cut = proxy.cutWhen('"type":"token"', { occurrence: 3 });
 * // ... play a turn through proxy.url ...
 * await cut; // the third token frame never reached the client
 * ```
 */

/** When to cut. */
export interface CutOptions {
  /** Cut at the n-th occurrence on one connection (default 1). */
  occurrence?: number;
}

/** A running proxy. */
export interface TcpProxy {
  /** `http://127.0.0.1:<port>` of the proxy. */
  url: string;
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /**
   * Arm a one-shot cut: the first connection whose server-to-client bytes
   * contain `pattern` (for the n-th time) is closed on both sides, and the
   * chunk holding the match is not delivered. Resolves when the cut happened.
   */
  cutWhen(pattern: string, options?: CutOptions): Promise<void>;
  /** Sever every open connection now. */
  cutAll(): void;
  /** Stop listening and close everything. */
  close(): Promise<void>;
}

interface Armed {
  pattern: string;
  occurrence: number;
  resolve: () => void;
}

interface Link {
  client: Deno.TcpConn;
  server: Deno.TcpConn;
  closed: boolean;
  seen: Map<string, number>;
  tail: string;
}

function closeLink(link: Link): void {
  if (link.closed) return;
  link.closed = true;
  for (const conn of [link.client, link.server]) {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** Start a proxy on 127.0.0.1 (a free port) forwarding to `127.0.0.1:<targetPort>`. */
export function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const links = new Set<Link>();
  const tasks = new Set<Promise<void>>();
  const armed: Armed[] = [];
  let accepted = 0;
  const latin1 = new TextDecoder("latin1");

  /** Whether this chunk trips an armed cut (patterns are ASCII; latin1 keeps bytes 1:1). */
  function trips(link: Link, chunk: Uint8Array): boolean {
    if (armed.length === 0) return false;
    const text = link.tail + latin1.decode(chunk);
    for (const [i, a] of armed.entries()) {
      let count = link.seen.get(a.pattern) ?? 0;
      // Occurrences wholly inside the carried-over tail were counted already.
      let from = Math.max(0, link.tail.length - a.pattern.length + 1);
      while (true) {
        const at = text.indexOf(a.pattern, from);
        if (at === -1) break;
        count++;
        from = at + a.pattern.length;
      }
      link.seen.set(a.pattern, count);
      if (count >= a.occurrence) {
        armed.splice(i, 1);
        queueMicrotask(a.resolve);
        return true;
      }
    }
    link.tail = text.slice(-64);
    return false;
  }

  async function pump(link: Link, from: Deno.TcpConn, to: Deno.TcpConn, inspect: boolean) {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (!link.closed) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.subarray(0, n);
        if (inspect && trips(link, chunk)) break;
        let written = 0;
        while (written < n) written += await to.write(chunk.subarray(written));
      }
    } catch {
      // The other side is gone; the link closes below.
    } finally {
      closeLink(link);
    }
  }

  function track(p: Promise<void>) {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  }

  const acceptLoop = (async () => {
    for await (const client of listener) {
      accepted++;
      let server: Deno.TcpConn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      } catch {
        client.close();
        continue;
      }
      const link: Link = { client, server, closed: false, seen: new Map(), tail: "" };
      links.add(link);
      const both = Promise.all([
        pump(link, client, server, false),
        pump(link, server, client, true),
      ]).then(() => {
        links.delete(link);
      });
      track(both);
    }
  })().catch(() => {/* listener closed */});

  const port = (listener.addr as Deno.NetAddr).port;
  return Promise.resolve({
    url: `http://127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    cutWhen(pattern, options = {}) {
      return new Promise<void>((resolve) => {
        armed.push({ pattern, occurrence: options.occurrence ?? 1, resolve });
      });
    },
    cutAll() {
      for (const link of links) closeLink(link);
    },
    async close() {
      listener.close();
      for (const link of links) closeLink(link);
      await acceptLoop;
      await Promise.all([...tasks]);
    },
  });
}
