/**
 * Settings, read once from environment variables and validated with zod.
 * A bad value stops start-up with a message that names the variable and what
 * it allows. `docs/operations.md` documents every variable.
 *
 * @module
 */
import { z } from "zod";

const bool = (fallback: boolean) =>
  z.enum(["true", "false", "1", "0", "yes", "no"], { error: "allowed: true or false" })
    .optional()
    .transform((v) => (v === undefined ? fallback : ["true", "1", "yes"].includes(v)));

const int = (fallback: number, min: number, max: number) =>
  z.string().optional().transform((v, ctx) => {
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: "custom", message: `allowed: an integer from ${min} to ${max}` });
      return z.NEVER;
    }
    return n;
  });

const prob = (fallback: number) =>
  z.string().optional().transform((v, ctx) => {
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < 0 || n > 1) {
      ctx.addIssue({ code: "custom", message: "allowed: a number from 0 to 1" });
      return z.NEVER;
    }
    return n;
  });

const str = (fallback: string) =>
  z.string().optional().transform((v) => (v === undefined || v === "" ? fallback : v));
const optStr = z.string().optional().transform((v) => (v === undefined || v === "" ? null : v));
const url = z.url({ error: "allowed: an absolute http(s) URL" }).optional()
  .transform((v) => v ?? null);
const list = z.string().optional().transform((v) =>
  (v ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
);

/** The environment schema. Keys are the variable names. */
const EnvSchema = z.object({
  DM_HOST: str("127.0.0.1"),
  DM_PORT: int(8080, 0, 65535),
  DM_STORE: z.enum(["sqlite", "journey-log"], { error: "allowed: sqlite or journey-log" })
    .optional().transform((v) => v ?? "sqlite"),
  DM_SQLITE_PATH: str("./data/dm.sqlite"),
  DM_LLM: z.enum(["openai", "scripted"], { error: "allowed: openai or scripted" }).optional(),
  DM_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"], {
    error: "allowed: debug, info, warn or error",
  }).optional().transform((v) => v ?? "info"),
  DM_PLUGINS: list,
  DM_SCRIPTED_DELAY_MS: int(20, 0, 60_000),
  DM_SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),

  OPENAI_API_KEY: optStr,
  OPENAI_BASE_URL: url,
  DM_LLM_MODEL: str("gpt-5.1"),
  DM_LLM_API: z.enum(["responses", "chat"], { error: "allowed: responses or chat" }).optional()
    .transform((v) => v ?? "responses"),
  DM_LLM_TIMEOUT_MS: int(60_000, 1, 3_600_000),
  DM_LLM_MAX_RETRIES: int(2, 0, 10),
  DM_LLM_MAX_OUTPUT_TOKENS: int(4000, 16, 200_000),

  DM_QUEST_TRIGGER_PROB: prob(0.3),
  DM_QUEST_COOLDOWN_TURNS: int(5, 0, 1_000_000),
  DM_POI_TRIGGER_PROB: prob(0.2),
  DM_POI_COOLDOWN_TURNS: int(3, 0, 1_000_000),
  DM_MEMORY_SPARK_PROB: prob(0.2),
  DM_MEMORY_SPARK_COUNT: int(3, 1, 20),
  DM_QUEST_POI_REFERENCE_PROB: prob(0.1),
  DM_RNG_SEED: optStr,
  DM_ADMIN_TOKEN: optStr,

  DM_SSE_HEARTBEAT_MS: int(15_000, 10, 3_600_000),
  DM_WS_MAX_BUFFERED_BYTES: int(1_048_576, 1024, 1_073_741_824),
  DM_DISCONNECT_POLICY: z.enum(["continue", "cancel"], { error: "allowed: continue or cancel" })
    .optional().transform((v) => v ?? "continue"),
  DM_MAX_STREAMS: int(10_000, 1, 1_000_000),
  DM_TURN_RATE_PER_SECOND: z.string().optional().transform((v, ctx) => {
    if (v === undefined || v === "") return 2;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      ctx.addIssue({ code: "custom", message: "allowed: a number above 0" });
      return z.NEVER;
    }
    return n;
  }),
  DM_TURN_BURST: int(2, 1, 1000),

  OTEL_SERVICE_NAME: str("dungeon-master"),
  DM_METRICS_ENABLED: bool(true),

  DM_AUTH: z.enum(["none", "jwt"], { error: "allowed: none or jwt" }).optional()
    .transform((v) => v ?? "none"),
  DM_JWT_SECRET: optStr,
  DM_JWT_JWKS_URL: url,
  DM_JWT_ISSUER: optStr,
  DM_JWT_AUDIENCE: optStr,
  DM_ALLOW_INSECURE: bool(false),
  DM_CORS_ORIGINS: list,
  DM_MAX_STREAMS_PER_USER: int(5, 1, 100_000),
  DM_MAX_STREAMS_PER_IP: int(50, 1, 1_000_000),
  DM_TURN_RATE_PER_USER_PER_SECOND: z.string().optional().transform((v, ctx) => {
    if (v === undefined || v === "") return 5;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      ctx.addIssue({ code: "custom", message: "allowed: a number above 0" });
      return z.NEVER;
    }
    return n;
  }),
  DM_MAX_CONCURRENT_LLM: int(64, 1, 100_000),
  DM_LLM_QUEUE_TIMEOUT_MS: int(30_000, 0, 600_000),

  DM_JOURNEY_LOG_URL: url,
  JOURNEY_LOG_BASE_URL: url,
  DM_JOURNEY_LOG_TIMEOUT_MS: int(5000, 1, 600_000),
  DM_JOURNEY_LOG_RETRIES: int(3, 0, 10),
});

/** Whether a host name binds only the loopback interface. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Validated settings. */
export type Config = Readonly<
  Omit<z.output<typeof EnvSchema>, "DM_LLM" | "JOURNEY_LOG_BASE_URL"> & {
    DM_LLM: "openai" | "scripted";
  }
>;

/** Raised when the environment holds a bad value. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Parse settings from an environment record.
 *
 * @example
 * ```ts
 * const config = loadConfig({ DM_PORT: "0", DM_SQLITE_PATH: ":memory:" });
 * ```
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${String(i.path[0] ?? "?")}: ${i.message}`),
    );
  }
  const { DM_LLM, JOURNEY_LOG_BASE_URL, ...rest } = parsed.data;
  const problems: string[] = [];
  const llm = DM_LLM ?? (rest.OPENAI_API_KEY ? "openai" : "scripted");
  if (llm === "openai" && !rest.OPENAI_API_KEY && !rest.OPENAI_BASE_URL) {
    problems.push("DM_LLM: openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)");
  }
  const journeyLogUrl = rest.DM_JOURNEY_LOG_URL ?? JOURNEY_LOG_BASE_URL;
  if (rest.DM_STORE === "journey-log" && !journeyLogUrl) {
    problems.push("DM_JOURNEY_LOG_URL: required when DM_STORE=journey-log");
  }
  if (rest.DM_AUTH === "jwt" && !rest.DM_JWT_SECRET && !rest.DM_JWT_JWKS_URL) {
    problems.push("DM_AUTH: jwt needs DM_JWT_SECRET (HS256) or DM_JWT_JWKS_URL (RS256/ES256)");
  }
  if (rest.DM_AUTH === "none" && !isLoopback(rest.DM_HOST) && !rest.DM_ALLOW_INSECURE) {
    problems.push(
      `DM_HOST: ${rest.DM_HOST} is not a loopback address; with DM_AUTH=none anyone who can ` +
        "reach it plays as the same user. Set DM_AUTH=jwt, or DM_ALLOW_INSECURE=true to accept that",
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ ...rest, DM_LLM: llm, DM_JOURNEY_LOG_URL: journeyLogUrl });
}

/** Read the process environment. */
export function configFromEnv(): Config {
  return loadConfig(Deno.env.toObject());
}
