/**
 * Reads the `OTEL_*` settings (and `DM_METRICS_ENABLED`) the telemetry SDK
 * honours, from an environment record rather than `process.env`, so that
 * start-up is testable and a bad value stops the service with a message that
 * names the variable, like every other setting (see `src/config.ts`).
 *
 * @module
 */
import { ConfigError } from "../config.ts";

/** Sampler names from the OpenTelemetry environment-variable specification. */
export const SAMPLER_NAMES = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
/** A sampler name. */
export type SamplerName = typeof SAMPLER_NAMES[number];

/** Levels for SDK self-diagnostics (`OTEL_LOG_LEVEL`). */
export const DIAG_LEVELS = ["none", "error", "warn", "info", "debug", "verbose", "all"] as const;
/** A diagnostics level. */
export type DiagLevelName = typeof DIAG_LEVELS[number];

/** Batch span processor tuning (`OTEL_BSP_*`); unset fields use SDK defaults. */
export interface BatchSettings {
  maxQueueSize?: number;
  maxExportBatchSize?: number;
  scheduledDelayMillis?: number;
  exportTimeoutMillis?: number;
}

/** Validated telemetry settings. */
export interface OtelSettings {
  /** `OTEL_SDK_DISABLED=true`: no SDK at all, every API call is a no-op. */
  readonly disabled: boolean;
  /** `DM_METRICS_ENABLED`: whether `/metrics` serves an exposition. */
  readonly metricsEnabled: boolean;
  /** Resource attributes: `OTEL_RESOURCE_ATTRIBUTES` with `service.name` resolved. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  /** Full OTLP/HTTP traces URL, or null when spans are not exported. */
  readonly tracesUrl: string | null;
  /** Extra headers for the OTLP request (`OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`). */
  readonly tracesHeaders: Readonly<Record<string, string>>;
  /** OTLP request timeout (`OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`), ms. */
  readonly tracesTimeoutMillis: number | null;
  readonly sampler: SamplerName;
  /** Ratio for the `*traceidratio` samplers. */
  readonly samplerRatio: number;
  readonly batch: Readonly<BatchSettings>;
  readonly diagLevel: DiagLevelName;
  /** Settings that are accepted but not acted on as the operator may expect. */
  readonly warnings: readonly string[];
}

const DEFAULT_SERVICE_NAME = "dungeon-master";

const val = (env: Record<string, string | undefined>, key: string): string | undefined => {
  const v = env[key]?.trim();
  return v === undefined || v === "" ? undefined : v;
};

/**
 * Parse `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, percent-encoded). Unlike the
 * SDK's detector, which silently drops the whole value on a mistake, a
 * malformed entry is reported so that a typo does not lose `deployment.environment`.
 */
export function parseResourceAttributes(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  for (const entry of raw.split(",")) {
    if (entry.trim() === "") continue;
    const parts = entry.split("=");
    if (parts.length !== 2 || parts[0].trim() === "") {
      throw new Error(`"${entry.trim()}" is not key=value (percent-encode ',' and '=')`);
    }
    try {
      out[decodeURIComponent(parts[0].trim())] = decodeURIComponent(parts[1].trim());
    } catch {
      throw new Error(`"${entry.trim()}" has a bad percent-encoding`);
    }
  }
  return out;
}

/** Parse `k=v,k2=v2` header lists; values are percent-decoded like the SDK does. */
function parseHeaders(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of (raw ?? "").split(",")) {
    const i = entry.indexOf("=");
    if (i <= 0) continue;
    const key = entry.slice(0, i).trim();
    const value = entry.slice(i + 1).trim();
    try {
      if (key !== "" && value !== "") out[decodeURIComponent(key)] = decodeURIComponent(value);
    } catch {
      out[key] = value;
    }
  }
  return out;
}

/**
 * Read and validate telemetry settings.
 *
 * @throws {ConfigError} naming each bad variable and what it allows.
 * @example
 * ```ts
 * const s = readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" });
 * s.tracesUrl; // "http://collector:4318/v1/traces"
 * ```
 */
export function readOtelSettings(env: Record<string, string | undefined>): OtelSettings {
  const problems: string[] = [];
  const warnings: string[] = [];

  const bool = (key: string, fallback: boolean, allowed: readonly string[]): boolean => {
    const v = val(env, key)?.toLowerCase();
    if (v === undefined) return fallback;
    if (!allowed.includes(v)) {
      problems.push(`${key}: allowed: true or false`);
      return fallback;
    }
    return ["true", "1", "yes"].includes(v);
  };
  const positiveInt = (key: string): number | undefined => {
    const v = val(env, key);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n <= 0) {
      problems.push(`${key}: allowed: an integer above 0`);
      return undefined;
    }
    return n;
  };

  // Deno's built-in exporter registers its own global providers with
  // @opentelemetry/api; two SDKs in one process fight over the globals and
  // every span would be reported twice or not at all.
  if (bool("OTEL_DENO", false, ["true", "false", "1", "0"])) {
    problems.push(
      "OTEL_DENO: must stay unset or false; the service runs its own OpenTelemetry SDK",
    );
  }

  const disabled = bool("OTEL_SDK_DISABLED", false, ["true", "false"]);
  const metricsEnabled = bool("DM_METRICS_ENABLED", true, [
    "true",
    "false",
    "1",
    "0",
    "yes",
    "no",
  ]);

  let resourceAttributes: Record<string, string> = {};
  try {
    resourceAttributes = parseResourceAttributes(val(env, "OTEL_RESOURCE_ATTRIBUTES"));
  } catch (e) {
    problems.push(`OTEL_RESOURCE_ATTRIBUTES: ${(e as Error).message}`);
  }
  // The specification gives OTEL_SERVICE_NAME precedence over a service.name
  // inside OTEL_RESOURCE_ATTRIBUTES.
  resourceAttributes["service.name"] = val(env, "OTEL_SERVICE_NAME") ??
    resourceAttributes["service.name"] ?? DEFAULT_SERVICE_NAME;

  const exporter = val(env, "OTEL_TRACES_EXPORTER")?.toLowerCase() ?? "otlp";
  if (exporter !== "otlp" && exporter !== "none") {
    problems.push("OTEL_TRACES_EXPORTER: allowed: otlp or none");
  }
  let tracesUrl: string | null = null;
  const specific = val(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const general = val(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  const candidate = specific ??
    (general === undefined ? undefined : `${general.replace(/\/+$/, "")}/v1/traces`);
  if (candidate !== undefined) {
    const key = specific !== undefined
      ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
      : "OTEL_EXPORTER_OTLP_ENDPOINT";
    let ok = false;
    try {
      ok = ["http:", "https:"].includes(new URL(candidate).protocol);
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`${key}: allowed: an absolute http(s) URL`);
    else if (exporter === "otlp") tracesUrl = candidate;
  }
  const protocolKey = val(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") !== undefined
    ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = val(env, protocolKey);
  if (protocol !== undefined && protocol !== "http/json") {
    warnings.push(
      `${protocolKey}=${protocol} is not supported; spans are sent as OTLP/HTTP JSON (http/json), ` +
        "so point the endpoint at an OTLP/HTTP port (4318), not gRPC (4317)",
    );
  }
  const tracesHeaders = {
    ...parseHeaders(val(env, "OTEL_EXPORTER_OTLP_HEADERS")),
    ...parseHeaders(val(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")),
  };
  const tracesTimeoutMillis = positiveInt("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") ??
    positiveInt("OTEL_EXPORTER_OTLP_TIMEOUT") ?? null;

  const samplerRaw = val(env, "OTEL_TRACES_SAMPLER")?.toLowerCase() ?? "parentbased_always_on";
  let sampler: SamplerName = "parentbased_always_on";
  if ((SAMPLER_NAMES as readonly string[]).includes(samplerRaw)) {
    sampler = samplerRaw as SamplerName;
  } else {
    problems.push(`OTEL_TRACES_SAMPLER: allowed: ${SAMPLER_NAMES.join(", ")}`);
  }
  let samplerRatio = 1;
  const argRaw = val(env, "OTEL_TRACES_SAMPLER_ARG");
  if (argRaw !== undefined && sampler.endsWith("traceidratio")) {
    const n = Number(argRaw);
    if (!Number.isFinite(n) || n < 0 || n > 1) {
      problems.push("OTEL_TRACES_SAMPLER_ARG: allowed: a number from 0 to 1");
    } else samplerRatio = n;
  }

  const batch: BatchSettings = {
    maxQueueSize: positiveInt("OTEL_BSP_MAX_QUEUE_SIZE"),
    maxExportBatchSize: positiveInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
    scheduledDelayMillis: positiveInt("OTEL_BSP_SCHEDULE_DELAY"),
    exportTimeoutMillis: positiveInt("OTEL_BSP_EXPORT_TIMEOUT"),
  };
  if (
    batch.maxQueueSize !== undefined && batch.maxExportBatchSize !== undefined &&
    batch.maxExportBatchSize > batch.maxQueueSize
  ) {
    problems.push("OTEL_BSP_MAX_EXPORT_BATCH_SIZE: allowed: at most OTEL_BSP_MAX_QUEUE_SIZE");
  }

  const diagRaw = val(env, "OTEL_LOG_LEVEL")?.toLowerCase() ?? "warn";
  let diagLevel: DiagLevelName = "warn";
  if ((DIAG_LEVELS as readonly string[]).includes(diagRaw)) diagLevel = diagRaw as DiagLevelName;
  else problems.push(`OTEL_LOG_LEVEL: allowed: ${DIAG_LEVELS.join(", ")}`);

  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    disabled,
    metricsEnabled,
    resourceAttributes: Object.freeze(resourceAttributes),
    tracesUrl,
    tracesHeaders: Object.freeze(tracesHeaders),
    tracesTimeoutMillis,
    sampler,
    samplerRatio,
    batch: Object.freeze(batch),
    diagLevel,
    warnings: Object.freeze(warnings),
  });
}
