/**
 * `web`: the game page. `GET /` serves `static/index.html`; `/static/app.css`
 * its styles; `/static/app.js` the page script and `/static/client.js` the
 * client library, both compiled from TypeScript (`static/app.ts`,
 * `src/client/mod.ts`) when the plugin starts. No JavaScript is kept in the
 * repository, so the browser always runs the code that was type-checked.
 *
 * The scripts are built with Deno's own bundler:
 *
 * 1. the runtime API `Deno.bundle`, when the process runs with
 *    `--unstable-bundle` (or `"unstable": ["bundle"]` in deno.json), needing
 *    only read access to the sources; otherwise
 * 2. `deno bundle --platform browser` run with `Deno.Command` on the same
 *    Deno executable, when the process may run it (`--allow-run`).
 *
 * With neither, the service still starts (the page is an extra, not the
 * API): the failure is logged with the fix, and the script routes answer
 * `503 not_ready`, which the page reports.
 *
 * @example
 * ```ts
 * import web from "./plugins/web/mod.ts";
 * const app = await createApp({ config, plugins: [web] });
 * // GET / → the game page
 * ```
 *
 * @module
 */
import { DmError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import { definePlugin } from "../../src/plugin/api.ts";

/**
 * The page's Content-Security-Policy: same-origin scripts, styles and
 * connections only (no inline code, no CDNs), and never framed.
 */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The scripts the page needs: served name → TypeScript entry point. */
export const SCRIPT_ENTRIES: Readonly<Record<string, URL>> = {
  "app.js": new URL("./static/app.ts", import.meta.url),
  "client.js": new URL("../../src/client/mod.ts", import.meta.url),
};

/** How the scripts were built, for the start-up log. */
export type BuildMethod = "Deno.bundle" | "deno bundle";

/** A built script. */
interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
}

/** The subset of the unstable `Deno.bundle` API this plugin uses. */
interface BundleApi {
  (options: {
    entrypoints: string[];
    platform?: "browser" | "deno";
    format?: "esm";
    minify?: boolean;
    write?: boolean;
  }): Promise<{
    success: boolean;
    errors: { text: string }[];
    outputFiles?: { text(): string }[];
  }>;
}

/** Raised when the scripts cannot be built. */
export class WebBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WebBuildError";
  }
}

function filePath(url: URL): string {
  return decodeURIComponent(url.pathname);
}

async function bundleInProcess(api: BundleApi, entry: URL): Promise<string> {
  const result = await api({
    entrypoints: [filePath(entry)],
    platform: "browser",
    format: "esm",
    write: false,
  });
  const file = result.outputFiles?.[0];
  if (!result.success || !file) {
    throw new WebBuildError(
      `Deno.bundle failed for ${filePath(entry)}: ${result.errors.map((e) => e.text).join("; ")}`,
    );
  }
  return file.text();
}

async function bundleWithCli(entry: URL): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    // --no-config: the client sources use only relative imports, and the
    // project's frozen lockfile must not be touched by a build.
    args: ["bundle", "--quiet", "--no-config", "--platform", "browser", filePath(entry)],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new WebBuildError(`deno bundle failed for ${filePath(entry)}: ${stderr}`);
  }
  return new TextDecoder().decode(output.stdout);
}

async function mayRunDeno(): Promise<boolean> {
  try {
    const status = await Deno.permissions.query({ name: "run", command: Deno.execPath() });
    return status.state === "granted";
  } catch {
    return false;
  }
}

/**
 * Compile the page scripts from TypeScript with Deno's bundler (see the
 * module comment for the two ways). Returns the JavaScript by served name.
 *
 * @example
 * ```ts
 * const { scripts, method } = await buildScripts();
 * scripts.get("client.js"); // the client library as one browser ES module
 * ```
 */
export async function buildScripts(
  entries: Readonly<Record<string, URL>> = SCRIPT_ENTRIES,
): Promise<{ scripts: Map<string, string>; method: BuildMethod }> {
  const api = (Deno as unknown as { bundle?: BundleApi }).bundle;
  let method: BuildMethod;
  let build: (entry: URL) => Promise<string>;
  if (typeof api === "function") {
    method = "Deno.bundle";
    build = (entry) => bundleInProcess(api, entry);
  } else if (await mayRunDeno()) {
    method = "deno bundle";
    build = bundleWithCli;
  } else {
    throw new WebBuildError(
      "Cannot compile the game page scripts: start Deno with --unstable-bundle (or add " +
        '"unstable": ["bundle"] to deno.json) to use Deno.bundle, or allow it to run ' +
        "`deno bundle` (--allow-run).",
    );
  }
  const names = Object.keys(entries);
  const built = await Promise.all(names.map((name) => build(entries[name])));
  return { scripts: new Map(names.map((name, i) => [name, built[i]])), method };
}

async function asset(text: string, type: string): Promise<Asset> {
  const body = new TextEncoder().encode(text);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  const hex = Array.from(digest.subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join("");
  return { body, type, etag: `"${hex}"` };
}

/** Answer an asset, or 304 when the browser's copy is current. */
function serve(request: Request, a: Asset, extra: Record<string, string> = {}): Response {
  const headers = {
    "Content-Type": a.type,
    // Revalidate every time: a restart may have rebuilt the scripts, and
    // the ETag keeps an unchanged reload cheap.
    "Cache-Control": "no-cache",
    ETag: a.etag,
    ...extra,
  };
  if (request.headers.get("if-none-match") === a.etag) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(a.body, { headers });
}

async function readStatic(name: string): Promise<string> {
  return await Deno.readTextFile(new URL(`./static/${name}`, import.meta.url));
}

// The sources cannot change under a running process, so one build serves
// every app it creates (tests start many); a failed build is retried.
let built: Promise<{ scripts: Map<string, string>; method: BuildMethod }> | null = null;

function buildOnce(): Promise<{ scripts: Map<string, string>; method: BuildMethod }> {
  built ??= buildScripts().catch((e) => {
    built = null;
    throw e;
  });
  return built;
}

/** Build everything the page serves; script failures are logged, not fatal. */
async function loadAssets(logger: Logger): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  assets.set("index.html", await asset(await readStatic("index.html"), "text/html; charset=utf-8"));
  assets.set("app.css", await asset(await readStatic("app.css"), "text/css; charset=utf-8"));
  const started = performance.now();
  try {
    const { scripts, method } = await buildOnce();
    for (const [name, js] of scripts) {
      assets.set(name, await asset(js, "text/javascript; charset=utf-8"));
    }
    logger.info("web_scripts_ready", {
      method,
      duration_ms: Math.round(performance.now() - started),
      bytes: [...scripts.values()].reduce((n, s) => n + s.length, 0),
    });
  } catch (e) {
    logger.error("web_scripts_unavailable", { error: e });
  }
  return assets;
}

/** The `web` plugin. */
export default definePlugin({
  name: "web",
  version: "1.0.0",
  async setup(host) {
    const assets = await loadAssets(host.logger);
    const page = assets.get("index.html")!;

    host.addRoute(
      "GET",
      "/",
      (request) => serve(request, page, { "Content-Security-Policy": PAGE_CSP }),
    );

    host.addRoute("GET", "/static/:name", (request, params) => {
      const name = params.name ?? "";
      const found = name === "index.html" ? undefined : assets.get(name);
      if (found) return serve(request, found);
      if (Object.hasOwn(SCRIPT_ENTRIES, name)) {
        throw new DmError(
          "not_ready",
          "The game page scripts could not be built; see the server log.",
        );
      }
      throw new DmError("not_found", "No such file.");
    });
  },
});
