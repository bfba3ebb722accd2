/**
 * Starts the OpenTelemetry SDK for the service: traces go to an OTLP/HTTP
 * collector when an endpoint is configured, metrics are kept in memory and
 * served in the Prometheus text format by the service's own `GET /metrics`,
 * and an AsyncLocalStorage context manager makes the active span follow
 * `await`s. Everything else in the code base talks only to
 * `@opentelemetry/api`, which stays a no-op until this runs.
 *
 * `docs/observability.md` lists every setting.
 *
 * @module
 */
import {
  context,
  diag,
  type DiagLogger,
  DiagLogLevel,
  logs,
  metrics,
  propagation,
  trace,
} from "@opentelemetry/api";
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { createLogger, type LogFields, type Logger } from "../log.ts";
import { type DiagLevelName, type OtelSettings, readOtelSettings } from "./otel_env.ts";

/** What `startTelemetry` hands back to `main`. */
export interface Telemetry {
  /** False when `OTEL_SDK_DISABLED=true`: nothing was registered. */
  readonly enabled: boolean;
  /** False when `DM_METRICS_ENABLED=false` (or the SDK is disabled). */
  readonly metricsEnabled: boolean;
  /** True when spans are exported (an OTLP endpoint is set). */
  readonly tracesExported: boolean;
  /**
   * The answer for `GET /metrics`: the Prometheus text exposition (format
   * 0.0.4). 404 when metrics are turned off; a comment-only exposition when
   * the SDK is disabled, so that a scraper configured anyway sees no error.
   */
  metricsResponse(): Promise<Response>;
  /** Export the spans that have ended so far (tests; before a crash exit). */
  forceFlush(): Promise<void>;
  /**
   * Flush spans, stop the SDK and unregister its globals, so that a later
   * `startTelemetry` in the same process (tests) can register again.
   * Idempotent; never throws.
   */
  shutdown(): Promise<void>;
}

/** Options for {@link startTelemetry}. */
export interface TelemetryOptions {
  /** Where SDK self-diagnostics go (export failures, dropped spans). */
  logger?: Logger;
  /** `service.version` resource attribute, unless OTEL_RESOURCE_ATTRIBUTES sets one. */
  serviceVersion?: string;
  /** Overrides `DM_METRICS_ENABLED`. */
  metricsEnabled?: boolean;
  /**
   * Longest `shutdown()` waits for the last spans to be exported (default
   * 5000 ms). With the collector down the OTLP exporter retries until its own
   * timeout (10 s); exit must not wait on that.
   */
  shutdownTimeoutMs?: number;
}

/** Content type of the Prometheus text exposition. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

// NodeSDK registers process-wide globals; this guards against a second start
// while one is running (the API would silently keep the first providers).
let active = false;

export { parentContextFromTraceparent, traceparentFromContext } from "./propagation.ts";

const DIAG_LEVEL: Record<DiagLevelName, DiagLogLevel> = {
  none: DiagLogLevel.NONE,
  error: DiagLogLevel.ERROR,
  warn: DiagLogLevel.WARN,
  info: DiagLogLevel.INFO,
  debug: DiagLogLevel.DEBUG,
  verbose: DiagLogLevel.VERBOSE,
  all: DiagLogLevel.ALL,
};

function diagArgs(args: unknown[]): LogFields {
  if (args.length === 0) return {};
  return {
    otel_args: args.map((a) =>
      a instanceof Error ? `${a.name}: ${a.message}` : typeof a === "string" ? a : safeString(a)
    ),
  };
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Routes SDK diagnostics into the service's JSON log, so export failures are visible. */
function diagToLogger(log: Logger): DiagLogger {
  return {
    error: (m, ...a) => log.error(`otel: ${m}`, diagArgs(a)),
    warn: (m, ...a) => log.warn(`otel: ${m}`, diagArgs(a)),
    info: (m, ...a) => log.info(`otel: ${m}`, diagArgs(a)),
    debug: (m, ...a) => log.debug(`otel: ${m}`, diagArgs(a)),
    verbose: (m, ...a) => log.debug(`otel: ${m}`, diagArgs(a)),
  };
}

function samplerFor(s: OtelSettings): Sampler {
  switch (s.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(s.samplerRatio);
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(s.samplerRatio) });
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

const METRICS_OFF = "metrics are disabled (DM_METRICS_ENABLED=false)\n";

const textResponse = (status: number, body: string) =>
  new Response(body, { status, headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });

/**
 * Start telemetry from environment settings. Call once, before the first
 * span or metric matters (metric instruments made earlier are re-created; see
 * `metrics.ts`), and `shutdown()` at exit so the last spans are exported.
 *
 * NodeSDK registers process-wide globals: a second start without a
 * `shutdown()` in between is refused with an error.
 *
 * @throws {import("../config.ts").ConfigError} on a bad `OTEL_*` value.
 * @example
 * ```ts
 * const telemetry = await startTelemetry(Deno.env.toObject(), { logger });
 * // GET /metrics → telemetry.metricsResponse()
 * await telemetry.shutdown();
 * ```
 */
export async function startTelemetry(
  env: Record<string, string | undefined>,
  options: TelemetryOptions = {},
): Promise<Telemetry> {
  const settings = readOtelSettings(env);
  const log = options.logger ?? createLogger("debug");
  for (const w of settings.warnings) log.warn(`telemetry: ${w}`);
  const metricsEnabled = options.metricsEnabled ?? settings.metricsEnabled;

  if (settings.disabled) {
    return {
      enabled: false,
      metricsEnabled: false,
      tracesExported: false,
      metricsResponse: () =>
        Promise.resolve(
          metricsEnabled
            ? textResponse(200, "# OpenTelemetry SDK disabled (OTEL_SDK_DISABLED=true)\n")
            : textResponse(404, METRICS_OFF),
        ),
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
  }
  if (active) {
    throw new Error("telemetry is already started in this process; shut it down first");
  }
  // Claimed before the first await so that two concurrent starts cannot both
  // get past the check above.
  active = true;
  try {
    return await startSdk(settings, metricsEnabled, log, options);
  } catch (e) {
    active = false;
    throw e;
  }
}

async function startSdk(
  settings: OtelSettings,
  metricsEnabled: boolean,
  log: Logger,
  options: TelemetryOptions,
): Promise<Telemetry> {
  // Loaded only when the SDK runs: it pulls in exporters and gRPC code that a
  // disabled service never needs.
  const [{ NodeSDK }, { OTLPTraceExporter }, { PrometheusExporter, PrometheusSerializer }] =
    await Promise.all([
      import("@opentelemetry/sdk-node"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/exporter-prometheus"),
    ]);

  const attributes: Record<string, string> = { ...settings.resourceAttributes };
  if (options.serviceVersion && attributes["service.version"] === undefined) {
    attributes["service.version"] = options.serviceVersion;
  }
  const resource = defaultResource().merge(resourceFromAttributes(attributes));

  let exporting: BatchSpanProcessor | null = null;
  if (settings.tracesUrl !== null) {
    exporting = new BatchSpanProcessor({
      exporter: new OTLPTraceExporter({
        url: settings.tracesUrl,
        headers: { ...settings.tracesHeaders },
        ...(settings.tracesTimeoutMillis === null
          ? {}
          : { timeoutMillis: settings.tracesTimeoutMillis }),
      }),
      ...Object.fromEntries(
        Object.entries(settings.batch).filter(([, v]) => v !== undefined),
      ),
    });
  }
  // Without an exporter a TracerProvider still runs (with a processor that
  // drops spans) so that log lines carry trace_id/span_id and a client's
  // traceparent continues into our spans.
  const spanProcessors: SpanProcessor[] = [exporting ?? new NoopSpanProcessor()];

  let reader: PrometheusExporter | null = null;
  if (metricsEnabled) {
    // No HTTP server of its own: /metrics is a route of the service, so it
    // shares the port, the access log and the shutdown sequence.
    reader = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  }
  // Same options as the reader: scope labels (otel_scope_name) would add a
  // constant label to every series without telling Prometheus anything new.
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true);

  const sdk = new NodeSDK({
    resource,
    autoDetectResources: false,
    resourceDetectors: [],
    instrumentations: [],
    sampler: samplerFor(settings),
    spanProcessors,
    metricReaders: reader === null ? [] : [reader],
    // An explicit empty list keeps NodeSDK from building an OTLP log
    // exporter from the environment: logs are JSON lines on stdout.
    logRecordProcessors: [],
    textMapPropagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  });
  sdk.start();
  // NodeSDK installs a console logger when OTEL_LOG_LEVEL is set; ours keeps
  // diagnostics in the JSON log format.
  diag.setLogger(diagToLogger(log), {
    logLevel: DIAG_LEVEL[settings.diagLevel],
    suppressOverrideMessage: true,
  });

  let stopping: Promise<void> | null = null;
  const stop = async () => {
    const limit = options.shutdownTimeoutMs ?? 5000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), limit);
    });
    try {
      const result = await Promise.race([sdk.shutdown().then(() => "done" as const), timedOut]);
      if (result === "timeout") {
        log.warn("telemetry: spans not exported before the shutdown timeout", {
          timeout_ms: limit,
        });
      }
    } catch (e) {
      log.warn("telemetry: shutdown failed", { error: e });
    } finally {
      clearTimeout(timer);
      // Unregister so that a later start in this process can register again.
      trace.disable();
      metrics.disable();
      propagation.disable();
      logs.disable();
      context.disable();
      diag.disable();
      active = false;
    }
  };

  return {
    enabled: true,
    metricsEnabled,
    tracesExported: exporting !== null,
    async metricsResponse() {
      if (reader === null) {
        return textResponse(404, METRICS_OFF);
      }
      if (stopping !== null) return textResponse(503, "# telemetry is shutting down\n");
      try {
        const { resourceMetrics, errors } = await reader.collect();
        if (errors.length > 0) {
          log.warn("telemetry: metric collection errors", {
            errors: errors.map((e) => String(e)),
          });
        }
        return textResponse(200, serializer.serialize(resourceMetrics));
      } catch (e) {
        log.error("telemetry: metric collection failed", { error: e });
        return textResponse(500, "# metric collection failed\n");
      }
    },
    async forceFlush() {
      try {
        await exporting?.forceFlush();
      } catch (e) {
        log.warn("telemetry: span flush failed", { error: e });
      }
    },
    shutdown() {
      stopping ??= stop();
      return stopping;
    },
  };
}
