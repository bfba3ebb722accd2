/**
 * Sending generated requests: with fetch when it can express them, else as
 * raw HTTP/1.1 over TCP. Every send has a generous time limit, so a hang is
 * reported as a hang instead of stalling the test run.
 */
import type { Answer } from "./check.ts";
import { rawRequestBytes } from "./raw_cases.ts";
import { rawRequest } from "./raw_http.ts";
import { fetchableHeaderValue } from "./values.ts";

/** How long one request may take before it counts as a hang. */
export const HANG_MS = 15_000;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A request to send. */
export interface Outgoing {
  method: string;
  target: string;
  headers: [string, string][];
  body: Uint8Array<ArrayBuffer> | null;
  chunked?: boolean;
}

/** The answer plus how it was sent, and whether it hung. */
export interface Sent extends Answer {
  via: "fetch" | "raw";
  hung: boolean;
}

/** Whether fetch can send this request as it is. */
export function fetchable(o: Outgoing): boolean {
  const method = o.method.toUpperCase();
  return TOKEN.test(o.method) && !["CONNECT", "TRACE", "TRACK"].includes(method) &&
    o.headers.every(([k, v]) => TOKEN.test(k) && fetchableHeaderValue(v)) &&
    !(o.body && ["GET", "HEAD"].includes(method));
}

function chunks(body: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array<ArrayBuffer>> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= body.byteLength) return controller.close();
      controller.enqueue(body.slice(offset, offset + 4096));
      offset += 4096;
    },
  });
}

/** Send with fetch, or raw when fetch cannot express the request. */
export async function send(base: string, o: Outgoing, forceRaw = false): Promise<Sent> {
  if (!forceRaw && fetchable(o)) {
    const headers = new Headers();
    for (const [k, v] of o.headers) headers.append(k, v);
    try {
      const res = await fetch(base + o.target, {
        method: o.method,
        headers,
        body: o.body === null ? null : o.chunked ? chunks(o.body) : o.body,
        redirect: "manual",
        signal: AbortSignal.timeout(HANG_MS),
      });
      const body = await res.text();
      return {
        status: res.status,
        header: (name) => res.headers.get(name),
        body,
        method: o.method,
        via: "fetch",
        hung: false,
      };
    } catch (e) {
      if (e instanceof DOMException && e.name === "TimeoutError") {
        return {
          status: null,
          header: () => null,
          body: "",
          method: o.method,
          via: "fetch",
          hung: true,
        };
      }
      // fetch refused something (or the server reset the connection after
      // answering early): say the same thing over raw TCP.
    }
  }
  const url = new URL(base + o.target);
  const raw = rawRequestBytes(url.host, o.method, url.pathname + url.search, o.headers, o.body);
  const a = await rawRequest(url.hostname, Number(url.port), raw, {
    method: o.method,
    timeoutMs: HANG_MS,
  });
  return {
    status: a.status,
    header: (name) => {
      const values = a.headers.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v);
      return values.length ? values.join(", ") : null;
    },
    body: a.body,
    method: o.method,
    via: "raw",
    hung: a.timedOut ?? false,
  };
}

/** Run `fn` over `items` with at most `limit` at once, in order of start. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
