/**
 * The model request dungeon-master makes for a turn, captured in process, so
 * the baseline relay can send the model a request of the same shape and size
 * (instructions, prompt, strict JSON schema) and the comparison is about
 * what each server does rather than about what it asks the model.
 *
 * @module
 */
import { createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { LOCAL_USER } from "../../src/http/auth.ts";
import { createLogger } from "../../src/log.ts";
import type { LlmChunk, LlmRequest } from "../../src/llm/provider.ts";
import { ZeroDelayLlm } from "./zero_delay_llm.ts";

/** What the relay sends the model (Responses API fields). */
export interface ModelRequestShape {
  instructions: string;
  input: string;
  schema_name: string;
  schema: Record<string, unknown>;
}

class Capturing extends ZeroDelayLlm {
  last: LlmRequest | null = null;
  override stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    this.last = request;
    return super.stream(request);
  }
}

/** Play an intro and `turns` turns in memory and return the last turn's model request. */
export async function captureDmRequest(turns = 3): Promise<ModelRequestShape> {
  const llm = new Capturing(30);
  const app = await createApp({
    config: loadConfig({
      DM_SQLITE_PATH: ":memory:",
      DM_RNG_SEED: "bench",
      DM_TURN_RATE_PER_SECOND: "1000000",
      DM_TURN_RATE_PER_USER_PER_SECOND: "1000000",
    }),
    llm,
    logger: createLogger("error", () => {}),
  });
  try {
    const { character } = await app.engine.createCharacter(LOCAL_USER, {
      name: "Bench",
      race: "Elf",
      class_name: "Ranger",
      custom_prompt: null,
    });
    for (let i = 0; i < turns; i++) {
      const handle = await app.engine.submit({
        user_id: LOCAL_USER,
        character_id: character.character_id,
        user_action: "I open the crypt door",
        transport: "http",
      });
      await app.engine.result(LOCAL_USER, handle.turn_id);
    }
  } finally {
    await app.close();
  }
  const r = llm.last;
  if (!r) throw new Error("no model request was made");
  return {
    instructions: r.system,
    input: r.prompt,
    schema_name: r.schema.name,
    schema: r.schema.json,
  };
}
