/**
 * Child processes of the benchmark: every server is the real `deno` binary
 * (`Deno.execPath()`), started directly so that its PID is the server's own
 * and `/proc/<pid>` describes it, not a wrapper's.
 *
 * @module
 */

/** A running child process with its output kept line by line. */
export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly process: Deno.ChildProcess;
  /** Last lines of stdout (bounded). */
  readonly stdout: string[];
  /** Last lines of stderr (bounded). */
  readonly stderr: string[];
  /** Resolves with the next stdout line that satisfies `match`, or rejects after `timeoutMs`. */
  waitForLine(match: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** Write to the child's stdin (when it was opened with `stdin: "piped"`). */
  write(text: string): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
}

const KEEP_LINES = 200;

/** Options of {@link spawnDeno}. */
export interface SpawnOptions {
  /** Environment added to the parent's (after removing `DM_*`/`OTEL_*`/`RELAY_*`). */
  env?: Record<string, string>;
  stdin?: boolean;
  cwd?: string;
  /** Called with every stdout line (e.g. to count log messages). */
  onLine?: (line: string) => void;
}

/** The parent's environment without settings that would leak into a server. */
function baseEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const key of Object.keys(env)) {
    if (/^(DM_|OTEL_|RELAY_|OPENAI_|JOURNEY_LOG_)/.test(key)) delete env[key];
  }
  return env;
}

/** Start `deno <args>` as a child. */
export function spawnDeno(name: string, args: string[], options: SpawnOptions = {}): Child {
  const process = new Deno.Command(Deno.execPath(), {
    args,
    env: { ...baseEnv(), ...options.env },
    clearEnv: true,
    cwd: options.cwd,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<(line: string) => void>();
  const pump = async (stream: ReadableStream<Uint8Array>, lines: string[], notify: boolean) => {
    let buffer = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      let end: number;
      while ((end = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        lines.push(line);
        if (lines.length > KEEP_LINES) lines.shift();
        if (notify) {
          options.onLine?.(line);
          for (const w of [...waiters]) w(line);
        }
      }
    }
    if (buffer !== "") lines.push(buffer);
  };
  const pumped = Promise.all([
    pump(process.stdout, stdout, true),
    pump(process.stderr, stderr, false),
  ]).catch(() => {});
  const writer = options.stdin ? process.stdin.getWriter() : null;
  const encoder = new TextEncoder();
  let stopping: Promise<Deno.CommandStatus> | null = null;

  return {
    name,
    pid: process.pid,
    process,
    stdout,
    stderr,
    waitForLine(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const done = (line: string) => {
          if (!match(line)) return;
          cleanup();
          resolve(line);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `${name}: no matching output line in ${timeoutMs} ms; stderr tail:\n` +
                stderr.slice(-20).join("\n"),
            ),
          );
        }, timeoutMs);
        const exited = process.status.then((s) => {
          cleanup();
          reject(
            new Error(
              `${name} exited (code ${s.code}) before the expected line; stderr tail:\n` +
                stderr.slice(-20).join("\n"),
            ),
          );
        });
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(done);
          exited.catch(() => {});
        };
        waiters.add(done);
        for (const line of stdout) done(line);
      });
    },
    async write(text) {
      if (!writer) throw new Error(`${name} has no stdin`);
      await writer.write(encoder.encode(text));
    },
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        try {
          await writer?.close();
        } catch { /* already closed */ }
        try {
          process.kill("SIGTERM");
        } catch { /* already gone */ }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            try {
              process.kill("SIGKILL");
            } catch { /* already gone */ }
            resolve();
          }, graceMs);
        });
        await Promise.race([process.status, killed]);
        clearTimeout(timer);
        const status = await process.status;
        await pumped;
        return status;
      })();
      return stopping;
    },
  };
}

/** A free TCP port on 127.0.0.1 (bound and released; the race is negligible on a bench host). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Poll `url` until it answers 200, at most `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `${url} not ready in ${timeoutMs} ms (${last})` +
      (child ? `; stderr tail:\n${child.stderr.slice(-20).join("\n")}` : ""),
  );
}
