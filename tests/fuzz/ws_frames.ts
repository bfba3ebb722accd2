/**
 * Hand-made WebSocket frames for what the `WebSocket` API cannot send:
 * invalid UTF-8 in a text frame, unmasked or reserved-bit frames, unknown
 * opcodes, oversized control frames, fragments.
 */

/** Options of one frame. */
export interface FrameOptions {
  opcode: number;
  payload: Uint8Array;
  fin?: boolean;
  /** Clients must mask; false sends an unmasked (illegal) frame. */
  mask?: boolean;
  /** RSV1-3 bits (0-7); non-zero is illegal without an extension. */
  rsv?: number;
}

/** Encode one frame. The mask key is fixed: masking is not about secrecy here. */
export function encodeFrame(o: FrameOptions): Uint8Array<ArrayBuffer> {
  const { opcode, payload } = o;
  const fin = o.fin ?? true;
  const mask = o.mask ?? true;
  const len = payload.byteLength;
  const head: number[] = [(fin ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | (opcode & 0x0f)];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff);
    head.push(len & 0xff);
  }
  const key = [0x12, 0x34, 0x56, 0x78];
  if (mask) head.push(...key);
  const out = new Uint8Array(head.length + len);
  out.set(head, 0);
  for (let i = 0; i < len; i++) out[head.length + i] = mask ? payload[i] ^ key[i % 4] : payload[i];
  return out;
}

/** Write all bytes to a connection. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.byteLength) written += await conn.write(data.subarray(written));
}
