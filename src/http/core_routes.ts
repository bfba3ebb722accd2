/**
 * Core HTTP routes: characters, the waiting `POST /turn` transport, turn
 * records, health and readiness. Streaming transports are plugins.
 *
 * @module
 */
import { DmError } from "../errors.ts";
import type { Store } from "../store/port.ts";
import type { LlmProvider } from "../llm/provider.ts";
import type { TurnEngine } from "../turn/engine.ts";
import { readJson } from "./body.ts";
import type { Router } from "./router.ts";
import { CreateCharacterBody, IdempotencyKey, TurnBody, uuid } from "./schemas.ts";

/** Validate an id from the path; malformed ids are `validation_error`. */
export function pathId(value: string | undefined, what: string): string {
  const parsed = uuid.safeParse(value);
  if (!parsed.success) throw new DmError("validation_error", `${what} must be a UUID`);
  return parsed.data.toLowerCase();
}

/** The `Idempotency-Key` header, validated. */
export function idempotencyKey(request: Request): string | null {
  const raw = request.headers.get("idempotency-key");
  if (raw === null) return null;
  const parsed = IdempotencyKey.safeParse(raw);
  if (!parsed.success) {
    throw new DmError(
      "validation_error",
      "Idempotency-Key must be 1-200 printable ASCII characters",
    );
  }
  return parsed.data;
}

/** Register the core routes. */
export function registerCoreRoutes(
  router: Router,
  deps: { engine: TurnEngine; store: Store; llm: LlmProvider },
): void {
  const { engine, store, llm } = deps;

  router.add("GET", "/health", () => Response.json({ status: "ok" }));

  router.add("GET", "/ready", async () => {
    const [storeOk, llmOk] = await Promise.all([
      store.ready().catch(() => false),
      llm.ready().catch(() => false),
    ]);
    const body = { status: storeOk && llmOk ? "ready" : "not_ready", store: storeOk, llm: llmOk };
    return Response.json(body, { status: storeOk && llmOk ? 200 : 503 });
  });

  router.add("POST", "/characters", async (request, _params, info) => {
    const body = await readJson(request, CreateCharacterBody);
    const { character, narrative } = await engine.createCharacter(info.userId, {
      name: body.name.trim(),
      race: body.race.trim(),
      class_name: body.class_name.trim(),
      custom_prompt: body.custom_prompt,
    });
    return Response.json({ character_id: character.character_id, narrative }, { status: 201 });
  });

  router.add("GET", "/characters/:id", async (_request, params, info) => {
    const id = pathId(params.id, "character_id");
    const view = await engine.getCharacter(info.userId, id);
    const c = view.character;
    return Response.json({
      character_id: c.character_id,
      name: c.name,
      race: c.race,
      class_name: c.class_name,
      custom_prompt: c.custom_prompt,
      status: c.status,
      location: c.location,
      quest: view.quest,
      combat: view.combat,
      pois: view.pois,
      recent_turns: view.recent_turns,
      turn_count: view.turn_count,
      extensions: view.plugin_state,
      created_at: c.created_at,
    });
  });

  router.add("POST", "/turn", async (request, _params, info) => {
    const key = idempotencyKey(request);
    const body = await readJson(request, TurnBody);
    const handle = await engine.submit({
      user_id: info.userId,
      character_id: body.character_id,
      user_action: body.user_action,
      transport: "http",
      idempotency_key: key,
      traceparent: request.headers.get("traceparent"),
    });
    const result = await engine.result(info.userId, handle.turn_id);
    if (result.type === "error") {
      throw new DmError(result.error_type, result.message, {
        extra: { turn_id: handle.turn_id },
        headers: result.error_type === "overloaded" ? { "Retry-After": "5" } : {},
      });
    }
    return Response.json(
      {
        turn_id: handle.turn_id,
        narrative: result.narrative,
        intents: result.intents,
        subsystem_summary: result.subsystem_summary,
      },
      { headers: { "X-Turn-Id": handle.turn_id } },
    );
  });

  router.add("GET", "/turns/:id", async (_request, params, info) => {
    const id = pathId(params.id, "turn_id");
    const r = await engine.getTurn(info.userId, id);
    return Response.json({
      turn_id: r.turn_id,
      character_id: r.character_id,
      status: r.status,
      user_action: r.user_action,
      narrative: r.narrative,
      intents: r.intents,
      subsystem_summary: r.subsystem_summary,
      usage: r.usage,
      error_type: r.error_type,
      created_at: r.created_at,
      completed_at: r.completed_at,
    });
  });
}
