/**
 * Request body schemas shared by every transport, so a turn submitted over
 * HTTP, SSE or WebSocket is validated by the same rules.
 *
 * @module
 */
import { z } from "zod";

/** A text field: trimmed length limits, no NUL bytes. */
export function text(min: number, max: number) {
  return z.string()
    .refine((s) => !s.includes("\u0000"), "must not contain NUL bytes")
    .refine(
      (s) => s.trim().length >= min,
      min === 1 ? "must not be empty" : `at least ${min} characters`,
    )
    .refine((s) => s.length <= max, `at most ${max} characters`);
}

/** A UUID id. */
export const uuid = z.string().regex(
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
  "must be a UUID",
);

/** `POST /characters` body. */
export const CreateCharacterBody = z.object({
  name: text(1, 100),
  race: text(1, 50),
  class_name: text(1, 50),
  custom_prompt: text(0, 2000).nullish().transform((v) => (v?.trim() ? v : null)),
});

/** `POST /turn` and `POST /turn/stream` body. */
export const TurnBody = z.object({
  character_id: uuid.transform((s) => s.toLowerCase()),
  user_action: text(1, 8000),
});

/** An `Idempotency-Key`: printable ASCII, 1–200 chars. */
export const IdempotencyKey = z.string().regex(
  /^[\x21-\x7e]{1,200}$/,
  "1-200 printable ASCII characters",
);
