/**
 * Reading and linting a Prometheus text exposition in tests: a small parser,
 * an id-likeness check for label values, and `promtool check metrics`.
 */
import assert from "node:assert/strict";

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A small text-format (0.0.4) parser: enough to read back what we serve. */
export function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3].replace("+Inf", "Infinity")) });
  }
  return { types, samples };
}

/** Values that look like per-entity ids: high-cardinality label values. */
export function looksLikeId(value: string): boolean {
  return /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i.test(value) || // UUID
    /\b[0-9a-f]{16,}\b/i.test(value) || // trace/span ids, hashes
    /\b\d{6,}\b/.test(value) || // numeric ids, timestamps
    /\/(?:[0-9a-f-]{8,}|\d+)(?:\/|$)/i.test(value) || // a raw path segment instead of a pattern
    // prefixed ids such as chr_01h9x or turn-8f2c (a digit somewhere after the prefix)
    /\b(?:chr|char|character|turn|user|quest|poi)[_-](?=[0-9a-z]*\d)[0-9a-z]{4,}/i.test(value);
}

export async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        "promtool is not installed, so the /metrics exposition cannot be linted. " +
          "Install it with `apt-get update && apt-get install -y prometheus` (CI does this).",
      );
    }
    throw e;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}
