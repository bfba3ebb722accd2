/**
 * The top entries of a V8 CPU profile (`deno run --cpu-prof`): self time by
 * function and by module, idle time left out of the percentages.
 *
 * ```sh
 * deno run --allow-read bench/profile_top.ts CPU.<…>.cpuprofile [--top=25]
 * ```
 *
 * @module
 */

/** The parts of a `.cpuprofile` this reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }>;
  samples: number[];
  timeDeltas: number[];
}

/** One line of the summary. */
export interface ProfileEntry {
  function: string;
  location: string;
  self_ms: number;
  /** Share of the non-idle sampled time. */
  self_pct: number;
}

/** A profile's summary. */
export interface ProfileSummary {
  busy_ms: number;
  idle_ms: number;
  top: ProfileEntry[];
  by_module: ProfileEntry[];
}

/** Shorten a script URL to a path relative to the repository or package. */
function shortUrl(url: string): string {
  if (url === "") return "(native)";
  const npm = url.match(
    /node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(.*)$/,
  );
  if (npm) return `npm:${npm[1]}/${npm[2]}`;
  const repo = url.match(/\/((?:src|plugins|bench|tests)\/.*)$/);
  if (repo) return repo[1];
  return url.replace(/^file:\/\//, "");
}

/** The module an entry is charged to: a package, a repository folder, or Deno's runtime. */
function moduleOf(url: string, fn: string): string {
  if (url === "") return fn.startsWith("(") ? fn : "(native)";
  const npm = url.match(/node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//);
  if (npm) return `npm:${npm[1]}`;
  const repo = url.match(/\/((?:src|plugins)\/[^/]+(?:\/[^/]+)?)\//);
  if (repo) return repo[1];
  const ext = url.match(/^ext:([^/]+)/);
  if (ext) return `ext:${ext[1]}`;
  return shortUrl(url);
}

/** Summarise `profile`: the `top` functions by self time and every module's share. */
export function summarizeProfile(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, { fn: string; loc: string; us: number }>();
  const mods = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const fn = functionName || "(anonymous)";
    if (fn === "(idle)") {
      idle += us;
      continue;
    }
    busy += us;
    const loc = url ? `${shortUrl(url)}:${lineNumber + 1}` : "";
    const key = `${fn}@${loc}`;
    const entry = fns.get(key) ?? { fn, loc, us: 0 };
    entry.us += us;
    fns.set(key, entry);
    const mod = moduleOf(url, fn);
    mods.set(mod, (mods.get(mod) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / Math.max(1, busy)) * 1000) / 10;
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    busy_ms: ms(busy),
    idle_ms: ms(idle),
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top).map((e) => ({
      function: e.fn,
      location: e.loc,
      self_ms: ms(e.us),
      self_pct: pct(e.us),
    })),
    by_module: [...mods.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([m, us]) => ({
      function: m,
      location: "",
      self_ms: ms(us),
      self_pct: pct(us),
    })),
  };
}

if (import.meta.main) {
  const file = Deno.args.find((a) => !a.startsWith("--"));
  if (!file) {
    console.error("usage: deno run --allow-read bench/profile_top.ts <file.cpuprofile> [--top=25]");
    Deno.exit(2);
  }
  const n = Number(Deno.args.find((a) => a.startsWith("--top="))?.slice(6) ?? 25);
  const summary = summarizeProfile(JSON.parse(Deno.readTextFileSync(file)), n);
  console.log(`busy ${summary.busy_ms} ms, idle ${summary.idle_ms} ms\n`);
  console.log("| self % | self ms | function | location |\n| --- | --- | --- | --- |");
  for (const e of summary.top) {
    console.log(`| ${e.self_pct} | ${e.self_ms} | ${e.function} | ${e.location} |`);
  }
  console.log("\n| self % | self ms | module |\n| --- | --- | --- |");
  for (const e of summary.by_module) {
    console.log(`| ${e.self_pct} | ${e.self_ms} | ${e.function} |`);
  }
}
