/**
 * The policy plugin: owns the numbers behind the game-rule gates (trigger
 * probabilities, cooldowns, memory-spark count) and lets an operator replace
 * them at run time through `GET`/`PUT /admin/policy`.
 *
 * It registers no stage. Rule plugins depend on it and read the policy with
 * {@link policyForTurn}, so one turn always sees one consistent policy even
 * when an operator swaps it mid-turn.
 *
 * @example
 * ```ts
 * import { policyForTurn, policyRef } from "../policy/mod.ts";
 * // in setup (with dependsOn: ["policy"]):
 * const policy = host.use(policyRef);
 * // in a gate:
 * const p = policyForTurn(policy, ctx);
 * const allowed = ctx.rng.roll("quest") < p.quest_trigger_prob;
 * ```
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { createServiceRef, definePlugin, type TurnContext } from "../../src/plugin/api.ts";
import type { Config } from "../../src/config.ts";
import { DmError } from "../../src/errors.ts";
import { readJson } from "../../src/http/body.ts";

const probability = z.number().min(0).max(1);
// Bounds mirror the environment settings in src/config.ts, so a policy that
// could be started with can also be set at run time, and vice versa.
const cooldown = z.number().int().min(0).max(1_000_000);

/** Schema of a complete policy; every field is required and unknown fields are rejected. */
export const PolicyConfigSchema = z.strictObject({
  quest_trigger_prob: probability,
  quest_cooldown_turns: cooldown,
  poi_trigger_prob: probability,
  poi_cooldown_turns: cooldown,
  memory_spark_probability: probability,
  quest_poi_reference_probability: probability,
  memory_spark_count: z.number().int().min(1).max(20),
});

/** The numbers behind the game-rule gates. */
export type PolicyConfig = Readonly<z.output<typeof PolicyConfigSchema>>;

/** The policy service other plugins use. */
export interface PolicyService {
  /** The policy in force now (a frozen object; replaced, never mutated). */
  current(): PolicyConfig;
  /**
   * Validate `next` as a complete policy and put it in force. All or nothing:
   * on any problem a `validation_error` DmError is thrown and the policy in
   * force is unchanged. Returns the new policy.
   */
  replace(next: unknown): PolicyConfig;
}

/** Service reference of the policy; consumers list `"policy"` in `dependsOn`. */
export const policyRef = createServiceRef<PolicyService>("policy");

/** The policy the environment settings describe. */
export function policyFromConfig(config: Config): PolicyConfig {
  return Object.freeze({
    quest_trigger_prob: config.DM_QUEST_TRIGGER_PROB,
    quest_cooldown_turns: config.DM_QUEST_COOLDOWN_TURNS,
    poi_trigger_prob: config.DM_POI_TRIGGER_PROB,
    poi_cooldown_turns: config.DM_POI_COOLDOWN_TURNS,
    memory_spark_probability: config.DM_MEMORY_SPARK_PROB,
    quest_poi_reference_probability: config.DM_QUEST_POI_REFERENCE_PROB,
    memory_spark_count: config.DM_MEMORY_SPARK_COUNT,
  });
}

/** Create a policy service holding `initial`. */
export function createPolicyService(initial: PolicyConfig): PolicyService {
  let current: PolicyConfig = Object.freeze({ ...initial });
  return {
    current: () => current,
    replace(next) {
      const parsed = PolicyConfigSchema.safeParse(next);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => ({
          path: i.path.map(String).join(".") || "(body)",
          message: i.message,
        }));
        throw new DmError(
          "validation_error",
          `Invalid policy: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
          { extra: { issues } },
        );
      }
      current = Object.freeze(parsed.data);
      return current;
    },
  };
}

const TURN_POLICY_KEY = "policy:snapshot";

/**
 * The policy of one turn: the first call in a turn takes a snapshot that
 * every later call of the same turn returns, so memory sparks, gates and
 * writes agree even if an operator replaces the policy during the turn.
 */
export function policyForTurn(service: PolicyService, ctx: TurnContext): PolicyConfig {
  const cached = ctx.locals.get(TURN_POLICY_KEY) as PolicyConfig | undefined;
  if (cached) return cached;
  const snapshot = service.current();
  ctx.locals.set(TURN_POLICY_KEY, snapshot);
  return snapshot;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest();

/**
 * Whether `header` carries `Bearer <token>` for the expected token digest.
 * Comparing fixed-length digests in constant time keeps both the token and
 * its length from leaking through response timing.
 */
function bearerMatches(header: string | null, expected: Uint8Array): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? "");
  // Hash something even without a token so that a missing header costs the same.
  const given = sha256(match?.[1] ?? "");
  return timingSafeEqual(given, expected) && match !== null;
}

/** The policy plugin. */
export default definePlugin({
  name: "policy",
  version: "1.0.0",
  setup(host) {
    const service = createPolicyService(policyFromConfig(host.config));
    host.provide(policyRef, service);

    const token = host.config.DM_ADMIN_TOKEN;
    // Without a token the routes are not registered at all, so every method
    // on /admin/policy answers exactly like an unknown path (404 not_found).
    if (token === null) return;
    const expected = sha256(token);
    const requireAdmin = (request: Request) => {
      if (!bearerMatches(request.headers.get("authorization"), expected)) {
        throw new DmError("unauthorized", undefined, {
          headers: { "WWW-Authenticate": 'Bearer realm="admin"' },
        });
      }
    };

    host.addRoute("GET", "/admin/policy", (request) => {
      requireAdmin(request);
      return Response.json(service.current());
    });

    host.addRoute("PUT", "/admin/policy", async (request, _params, info) => {
      requireAdmin(request);
      // readJson caps the body at 64 KiB while streaming it and validates it.
      const body = await readJson(request, PolicyConfigSchema);
      const before = service.current();
      const after = service.replace(body);
      host.logger.info("policy_updated", {
        actor: "admin",
        request_id: info.requestId,
        before,
        after,
      });
      return Response.json(after);
    });
  },
});
