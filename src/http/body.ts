/**
 * Reading request bodies safely: a hard size cap enforced while streaming
 * (so a huge body is refused before it is read whole), strict UTF-8, JSON,
 * then a zod schema. Every failure is a catalogue error.
 *
 * @module
 */
import type { z } from "zod";
import { DmError } from "../errors.ts";

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Longest time a body may take to arrive. A client trickling bytes
 * (slow-loris) would otherwise hold a connection and a handler forever.
 */
export const BODY_TIMEOUT_MS = 10_000;

/** Read at most `limit` bytes of the body, or throw `payload_too_large`. */
export async function readBodyBytes(
  request: Request,
  limit = MAX_BODY_BYTES,
  timeoutMs = BODY_TIMEOUT_MS,
): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new DmError("payload_too_large", `Request bodies are limited to ${limit} bytes.`);
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DmError("request_timeout")), timeoutMs);
  });
  try {
    while (true) {
      const { done, value } = await Promise.race([reader.read(), deadline]);
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw new DmError("payload_too_large", `Request bodies are limited to ${limit} bytes.`);
      }
      chunks.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof DmError) throw e;
    throw new DmError("validation_error", "The request body could not be read.");
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Describe the first zod issue for the error message. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue?.path.length ? issue.path.join(".") : "body";
  return `${path}: ${issue?.message ?? "invalid"}`;
}

/**
 * Read a JSON body and validate it.
 *
 * @example
 * ```ts
 * const body = await readJson(request, z.object({ name: z.string() }));
 * ```
 */
export async function readJson<T>(request: Request, schema: z.ZodType<T>): Promise<T> {
  const type = request.headers.get("content-type");
  if (type !== null && !/^application\/([\w.+-]+\+)?json\b/i.test(type.trim())) {
    throw new DmError("unsupported_media_type");
  }
  const bytes = await readBodyBytes(request);
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new DmError("validation_error", "The request body is not valid UTF-8.");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DmError("validation_error", "The request body is not valid JSON.");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new DmError("validation_error", describeIssue(parsed.error));
  return parsed.data;
}
