/**
 * The LLM provider port. The scripted storyteller and the openai provider
 * both implement it, so the rest of the pipeline cannot tell them apart.
 *
 * @module
 */
import type { TokenUsage } from "../store/port.ts";

/**
 * Facts about the scene, given to providers beside the prompt text. Real
 * models ignore them (they read the prompt); the offline scripted storyteller
 * uses them to react without parsing prose.
 */
export interface SceneFacts {
  user_action: string;
  character_name: string;
  location: string | null;
  in_combat: boolean;
  active_quest: string | null;
  /** Policy gate results by subsystem name (`quest`, `poi`, …). */
  allowed: Record<string, boolean>;
  /** Names of places recalled as memory sparks. */
  sparks: string[];
  /** Whether this is a character's intro scene. */
  intro: boolean;
}

/** One request for a structured outcome. */
export interface LlmRequest {
  /** System instructions. */
  system: string;
  /** The user prompt assembled from plugin sections. */
  prompt: string;
  /** JSON schema of the outcome (strict mode), and its name. */
  schema: { name: string; json: Record<string, unknown> };
  scene: SceneFacts;
  max_output_tokens: number;
  /** Aborts the upstream request (client disconnect, shutdown). */
  signal: AbortSignal;
}

/** A piece of a streamed completion. */
export type LlmChunk =
  | { type: "delta"; text: string }
  | { type: "usage"; usage: TokenUsage };

/** A model that streams the raw text of a JSON outcome. */
export interface LlmProvider {
  /** `scripted`, `openai`, …: used as `gen_ai.system`. */
  readonly system: string;
  readonly model: string;
  ready(): Promise<boolean>;
  /**
   * Stream the raw completion text. Throws a `DmError` of type `llm_timeout`,
   * `llm_error` or `llm_response_error` on failure. Retries are the
   * provider's business, and only allowed before its first delta.
   */
  stream(request: LlmRequest): AsyncIterable<LlmChunk>;
}
