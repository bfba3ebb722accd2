/**
 * The operator files agree with each other and with the service: the
 * collector's pipelines only name components it defines, the scrape target is
 * the service's /metrics on its port, compose wires the collector config and
 * endpoints by service name, and the Dockerfile pins Deno and runs the
 * service unprivileged with a health check. No Docker engine is needed: these
 * are the mistakes that otherwise only show up at `docker compose up`.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, ROOT));

// deno-lint-ignore no-explicit-any -- parsed YAML is untyped; the test checks its shape.
type Yaml = any;
const collector: Yaml = parse(read("otel-collector.yaml"));
const compose: Yaml = parse(read("compose.yaml"));

/** `otlp_grpc/jaeger` → `otlp_grpc`: the component type before the optional name. */
const typeOf = (id: string) => id.split("/")[0];

/** Dockerfile instructions with line continuations joined and comments dropped. */
function dockerfile(): { op: string; args: string }[] {
  const joined = read("Dockerfile").split("\n").filter((l) => !/^\s*#/.test(l)).join("\n")
    .replace(/\\\n/g, " ");
  return joined.split("\n").map((l) => l.trim()).filter((l) => l !== "").map((l) => {
    const i = l.search(/\s/);
    return { op: l.slice(0, i).toUpperCase(), args: l.slice(i + 1).trim() };
  });
}

/** An exec-form (JSON array) or shell-form instruction argument as words. */
function words(args: string): string[] {
  if (args.startsWith("[")) return JSON.parse(args);
  return args.split(/\s+/);
}

Deno.test("collector: every pipeline names defined components, memory_limiter first", () => {
  const pipelines = collector.service?.pipelines ?? {};
  assert.ok(pipelines.traces, "a traces pipeline");
  assert.ok(pipelines.metrics, "a metrics pipeline");
  for (const [name, p] of Object.entries<Yaml>(pipelines)) {
    for (const kind of ["receivers", "processors", "exporters"] as const) {
      assert.ok(
        Array.isArray(p[kind]) && p[kind].length > 0,
        `${name}.${kind} is a non-empty list`,
      );
      for (const id of p[kind]) {
        assert.ok(
          collector[kind] && id in collector[kind],
          `${name} uses ${kind.slice(0, -1)} "${id}" that is not defined under ${kind}:`,
        );
      }
      assert.equal(new Set(p[kind]).size, p[kind].length, `${name}.${kind} has duplicates`);
    }
    assert.equal(p.processors[0], "memory_limiter", `${name}: memory_limiter must come first`);
    assert.ok(p.processors.includes("batch"), `${name}: batch processor`);
  }
  for (const ext of collector.service?.extensions ?? []) {
    assert.ok(collector.extensions && ext in collector.extensions, `extension ${ext} defined`);
  }
  const ml = collector.processors.memory_limiter;
  assert.ok(ml.check_interval, "memory_limiter needs check_interval");
  assert.ok(ml.limit_mib || ml.limit_percentage, "memory_limiter needs a limit");
});

Deno.test("collector: OTLP in on 4317/4318, traces to Jaeger, metrics to Prometheus", () => {
  const otlp = collector.receivers.otlp.protocols;
  assert.match(otlp.grpc.endpoint, /:4317$/);
  assert.match(otlp.http.endpoint, /:4318$/);
  assert.ok(collector.service.pipelines.traces.receivers.includes("otlp"));

  const traceExporters: string[] = collector.service.pipelines.traces.exporters;
  const toJaeger = traceExporters.filter((id) => ["otlp", "otlp_grpc"].includes(typeOf(id)));
  assert.equal(toJaeger.length, 1, `one OTLP/gRPC trace exporter in ${traceExporters}`);
  const jaeger = collector.exporters[toJaeger[0]];
  assert.equal(jaeger.endpoint, "jaeger:4317");
  assert.equal(jaeger.tls?.insecure, true);
  assert.ok(traceExporters.some((id) => typeOf(id) === "debug"), "debug exporter on traces");

  const metricExporters: string[] = collector.service.pipelines.metrics.exporters;
  const prw = metricExporters.find((id) => typeOf(id) === "prometheusremotewrite");
  assert.ok(prw, "prometheusremotewrite on the metrics pipeline");
  assert.equal(collector.exporters[prw].endpoint, "http://prometheus:9090/api/v1/write");
});

Deno.test("collector: scrapes the service's /metrics on port 8080", () => {
  const receivers: string[] = collector.service.pipelines.metrics.receivers;
  const id = receivers.find((r) => typeOf(r) === "prometheus");
  assert.ok(id, "a prometheus receiver on the metrics pipeline");
  const scrapes: Yaml[] = collector.receivers[id].config.scrape_configs;
  const targets = scrapes.flatMap((s) =>
    (s.static_configs ?? []).flatMap((c: Yaml) =>
      (c.targets as string[]).map((t) => ({ target: t, path: s.metrics_path ?? "/metrics" }))
    )
  );
  assert.deepEqual(targets, [{ target: "dungeon-master:8080", path: "/metrics" }]);
  // The target host is the compose service name.
  assert.ok(compose.services["dungeon-master"], "compose service dungeon-master");
  // The collector expands ${...} in its config; a stray `$` would be eaten.
  assert.doesNotMatch(read("otel-collector.yaml"), /\$(?!\$|\{)/);
});

Deno.test("compose: services, collector config mount, endpoints by service name", () => {
  const s = compose.services;
  for (const name of ["dungeon-master", "otel-collector", "jaeger", "prometheus"]) {
    assert.ok(s[name], `service ${name}`);
  }
  const dm = s["dungeon-master"];
  const build = typeof dm.build === "string" ? { context: dm.build } : dm.build;
  assert.equal(build.context, ".");
  assert.equal(build.dockerfile ?? "Dockerfile", "Dockerfile");
  const env: Record<string, string> = Array.isArray(dm.environment)
    ? Object.fromEntries(dm.environment.map((e: string) => e.split(/=(.*)/s).slice(0, 2)))
    : dm.environment;
  assert.equal(env.DM_HOST, "0.0.0.0");
  assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector:4318");
  assert.equal(env.OTEL_DENO, undefined, "Deno's built-in OTel must stay off");
  assert.ok(
    (dm.ports as string[]).some((p) => String(p).endsWith(":8080")),
    "service port 8080 published",
  );

  const col = s["otel-collector"];
  assert.match(col.image, /^otel\/opentelemetry-collector-contrib:\d+\.\d+\.\d+$/);
  const configArg = (col.command as string[]).find((a) => a.startsWith("--config="));
  assert.ok(configArg, "collector --config= argument");
  const configPath = configArg.slice("--config=".length);
  const mount = (col.volumes as string[]).find((v) => v.split(":")[1] === configPath);
  assert.ok(mount, `a volume mounting the config at ${configPath}`);
  assert.equal(mount.split(":")[0], "./otel-collector.yaml");

  assert.match(s.jaeger.image, /^jaegertracing\/(all-in-one|jaeger):\d+\.\d+\.\d+$/);
  assert.match(s.prometheus.image, /^prom\/prometheus:v\d+\.\d+\.\d+$/);
  assert.ok(
    (s.prometheus.command as string[]).includes("--web.enable-remote-write-receiver"),
    "Prometheus must accept remote write from the collector",
  );
});

Deno.test("Dockerfile: pinned Deno, frozen install, non-root, narrowed permissions, health check", () => {
  const ins = dockerfile();
  const from = ins.filter((i) => i.op === "FROM");
  assert.deepEqual(from.map((i) => i.args), ["denoland/deno:2.9.5"]);
  assert.equal(Deno.version.deno, "2.9.5", "the image pins the Deno the tests run on");

  const runs = ins.filter((i) => i.op === "RUN").map((i) => i.args).join(" && ");
  assert.match(runs, /deno install --frozen/);
  assert.match(runs, /deno cache (--frozen )?src\/main\.ts/);

  const users = ins.filter((i) => i.op === "USER");
  assert.ok(users.length > 0, "a USER instruction");
  const user = users.at(-1)!.args;
  assert.ok(!["root", "0", "0:0", "root:root"].includes(user), `runs as ${user}`);
  // The last USER must come before CMD, or it would not apply to the service.
  assert.ok(ins.lastIndexOf(users.at(-1)!) < ins.findIndex((i) => i.op === "CMD"));

  const health = ins.find((i) => i.op === "HEALTHCHECK");
  assert.ok(health, "a HEALTHCHECK");
  assert.match(health.args, /\/health\b/);
  assert.match(health.args, /CMD \[?"?deno"?,? "?eval/);

  const env = ins.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
  assert.match(env, /DM_HOST=0\.0\.0\.0/);
  assert.doesNotMatch(env, /OTEL_DENO=(true|1)/);
  assert.ok(ins.some((i) => i.op === "EXPOSE" && i.args.split(/\s+/).includes("8080")));

  const cmd = words(ins.find((i) => i.op === "CMD")!.args);
  assert.deepEqual(cmd.slice(0, 2), ["deno", "run"]);
  assert.equal(cmd.at(-1), "src/main.ts");
  for (const broad of ["-A", "--allow-all", "--allow-run", "--allow-ffi", "--allow-write"]) {
    assert.ok(!cmd.includes(broad), `CMD must not use ${broad}`);
  }
  for (const need of ["--allow-net", "--allow-env", "--allow-read=.", "--allow-write=./data"]) {
    assert.ok(cmd.includes(need), `CMD needs ${need}`);
  }
});

Deno.test(".dockerignore keeps local state out of the build context", () => {
  const ignored = read(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const path of ["node_modules", "data", ".git", ".env"]) {
    assert.ok(ignored.includes(path), `.dockerignore lists ${path}`);
  }
  // The build needs these; ignoring them would break `deno install --frozen`.
  for (const path of ["deno.json", "deno.lock", "src"]) {
    assert.ok(!ignored.includes(path), `.dockerignore must not list ${path}`);
  }
});
