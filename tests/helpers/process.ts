/**
 * Run the real service (`src/main.ts`) as a child process, the way
 * operators run it, and find its URL from its "listening" log line.
 */

/** A running service process. */
export interface ServiceProcess {
  child: Deno.ChildProcess;
  url: string;
  /** Log lines seen so far (JSON strings). */
  lines: string[];
  /** Send a signal and wait for the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Start `src/main.ts` with `env` (port 0 unless given) and wait until it listens. */
export async function spawnService(env: Record<string, string>): Promise<ServiceProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "src/main.ts"],
    env: { DM_PORT: "0", DM_LOG_LEVEL: "info", ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const lines: string[] = [];
  let buffer = "";
  let url: string | null = null;
  while (url === null) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the service exited before listening");
    buffer += value;
    const complete = buffer.split("\n");
    buffer = complete.pop()!;
    for (const line of complete) {
      lines.push(line);
      if (line.includes('"msg":"listening"')) url = JSON.parse(line).url;
    }
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  const drained = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const complete = buffer.split("\n");
      buffer = complete.pop()!;
      lines.push(...complete);
    }
  })().catch(() => {});
  return {
    child,
    url,
    lines,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      const status = await child.status;
      await drained;
      return status;
    },
  };
}
