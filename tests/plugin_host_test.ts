/** The plugin host: dependencies, ordering, isolation and encapsulation. */
import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";
import { createApp } from "../src/app.ts";
import { createLogger } from "../src/log.ts";
import { createServiceRef, definePlugin, type Plugin } from "../src/plugin/api.ts";
import { PluginError, resolvePluginOrder } from "../src/plugin/host.ts";
import { BUILTIN_PLUGINS } from "../src/builtin_plugins.ts";
import { TEST_ENV } from "./helpers/server.ts";

const quiet = createLogger("error", () => {});
const config = loadConfig(TEST_ENV);

function plugin(name: string, dependsOn: string[] = [], extra: Partial<Plugin> = {}): Plugin {
  return definePlugin({ name, dependsOn, setup() {}, ...extra });
}

Deno.test("plugins are ordered after their dependencies, ties keep list order", () => {
  const order = resolvePluginOrder([
    plugin("c", ["a"]),
    plugin("a"),
    plugin("b"),
    plugin("d", ["c", "b"]),
  ]).map((p) => p.name);
  // Each step takes the earliest plugin in the list whose dependencies are met.
  assert.deepEqual(order, ["a", "c", "b", "d"]);
});

Deno.test("a missing dependency is a start-up error naming both plugins", () => {
  assert.throws(
    () => resolvePluginOrder([plugin("quest", ["policy-engine"])]),
    (e: Error) =>
      e instanceof PluginError && /quest/.test(e.message) && /policy-engine/.test(e.message),
  );
});

Deno.test("a dependency cycle is a start-up error naming the cycle", () => {
  assert.throws(
    () => resolvePluginOrder([plugin("a", ["c"]), plugin("b", ["a"]), plugin("c", ["b"])]),
    (e: Error) =>
      e instanceof PluginError && /cycle/.test(e.message) && /a/.test(e.message) &&
      /b/.test(e.message) && /c/.test(e.message),
  );
});

Deno.test("built-in stages run in the documented order", async () => {
  const app = await createApp({ config, logger: quiet });
  try {
    const stages = app.plugins.pipeline.stages;
    const all = [
      ...stages.prepare,
      ...stages.generate,
      ...stages.parse,
      ...stages.apply,
      ...stages.finish,
    ]
      .map((s) => s.name);
    assert.deepEqual(all, [
      "memory-sparks",
      "llm-stream",
      "outcome-parser",
      "quest",
      "combat",
      "poi",
      "narrative",
    ]);
  } finally {
    await app.close();
  }
});

Deno.test("stage order does not depend on plugin list order", async () => {
  const reversed = [...BUILTIN_PLUGINS].reverse();
  const app = await createApp({ config, logger: quiet, builtins: reversed });
  try {
    assert.deepEqual(app.plugins.pipeline.stages.apply.map((s) => s.name), [
      "quest",
      "combat",
      "poi",
      "narrative",
    ]);
  } finally {
    await app.close();
  }
});

Deno.test("a stage order cycle is refused", async () => {
  const bad = plugin("loop", [], {
    setup(host) {
      host.addStage({ name: "x", phase: "finish", after: ["y"], onError: "skip", run() {} });
      host.addStage({ name: "y", phase: "finish", after: ["x"], onError: "skip", run() {} });
    },
  });
  await assert.rejects(
    createApp({ config, logger: quiet, plugins: [bad] }),
    (e: Error) => e instanceof PluginError && /x/.test(e.message) && /y/.test(e.message),
  );
});

Deno.test("setup that never finishes hits the boot deadline", async () => {
  const { PluginSet } = await import("../src/plugin/host.ts");
  const set = new PluginSet();
  let closed = false;
  const ok = plugin("ok", [], {
    close: () => {
      closed = true;
    },
  });
  const hang = plugin("hang", [], { setup: () => new Promise<void>(() => {}) });
  await assert.rejects(
    // deno-lint-ignore no-explicit-any -- the host deps are not used by these plugins
    set.setup([ok, hang], { logger: quiet, setupTimeoutMs: 20 } as any),
    (e: Error) => e instanceof PluginError && /hang/.test(e.message) && /20 ms/.test(e.message),
  );
  assert.equal(closed, true, "already set-up plugins are closed on a failed boot");
});

Deno.test("services are only visible to plugins that declare the provider", async () => {
  const ref = createServiceRef<{ hello(): string }>("greeter");
  const provider = plugin("greeter", [], { setup: (h) => h.provide(ref, { hello: () => "hi" }) });
  let seen = "";
  const consumer = plugin("consumer", ["greeter"], {
    setup: (h) => {
      seen = h.use(ref).hello();
    },
  });
  const app = await createApp({ config, logger: quiet, plugins: [provider, consumer] });
  await app.close();
  assert.equal(seen, "hi");
  const sneaky = plugin("sneaky", [], { setup: (h) => void h.use(ref) });
  await assert.rejects(
    createApp({ config, logger: quiet, plugins: [provider, sneaky] }),
    (e: Error) => /sneaky/.test(e.message) && /dependsOn/.test(e.message),
  );
});

Deno.test("plugins close in reverse set-up order", async () => {
  const closed: string[] = [];
  const a = plugin("a", [], { close: () => void closed.push("a") });
  const b = plugin("b", ["a"], { close: () => void closed.push("b") });
  const app = await createApp({ config, logger: quiet, plugins: [b, a] });
  await app.close();
  assert.deepEqual(closed.slice(0, 2), ["b", "a"]);
});
