/**
 * A real OTLP/HTTP trace receiver for tests: `Deno.serve` on 127.0.0.1 with
 * an ephemeral port, accepting `POST /v1/traces` in the JSON encoding that
 * `@opentelemetry/exporter-trace-otlp-http` sends (optionally gzip'd), and
 * flattening what it receives into {@link ReceivedSpan}s.
 *
 * Protobuf bodies are answered 415: the service only ever sends JSON, and a
 * 415 makes a mis-configured exporter fail loudly instead of silently.
 *
 * @example
 * ```ts
 * await using receiver = await OtlpReceiver.start();
 * // run the service with OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url
 * const [turn] = await receiver.waitForSpans((s) => s.some((x) => x.name === "turn"));
 * ```
 *
 * @module
 */

/** A flattened attribute value as OTLP JSON carries it. */
export type AttrValue =
  | string
  | number
  | boolean
  | null
  | AttrValue[]
  | { [key: string]: AttrValue };

/** One span event. */
export interface ReceivedEvent {
  name: string;
  timeUnixNano: string;
  attributes: Record<string, AttrValue>;
}

/** One received span, ids as lowercase hex. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty string for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP kind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, AttrValue>;
  events: ReceivedEvent[];
  /** OTLP status: code 0 unset, 1 ok, 2 error. */
  status: { code: number; message?: string };
  /** Resource attributes of the batch the span came in. */
  resource: Record<string, AttrValue>;
  /** Instrumentation scope name. */
  scope: string;
}

/** OTLP JSON `AnyValue`; only the fields the JSON encoding can carry. */
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number | string;
  bytesValue?: string;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}

function anyValue(v: AnyValue | undefined): AttrValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  // int64 may arrive as a JSON string per the OTLP JSON mapping.
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return Number(v.doubleValue);
  if (v.bytesValue !== undefined) return v.bytesValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue !== undefined) return flatten(v.kvlistValue.values);
  return null;
}

function flatten(kvs: KeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

/** OTLP JSON ids are hex; the proto3 JSON mapping would be base64. Accept both. */
function hexId(id: string | undefined): string {
  if (!id) return "";
  if (/^[0-9a-f]+$/i.test(id)) return id.toLowerCase();
  try {
    return Array.from(atob(id), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
  } catch {
    return id;
  }
}

// A loose shape: the receiver must not crash on fields it does not know.
interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: {
      scope?: { name?: string };
      spans?: {
        traceId?: string;
        spanId?: string;
        parentSpanId?: string;
        name?: string;
        kind?: number;
        startTimeUnixNano?: string | number;
        endTimeUnixNano?: string | number;
        attributes?: KeyValue[];
        events?: { name?: string; timeUnixNano?: string | number; attributes?: KeyValue[] }[];
        status?: { code?: number; message?: string };
      }[];
    }[];
  }[];
}

/** Turn an OTLP JSON export request into flat spans. */
export function spansFromExportRequest(body: ExportRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = flatten(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: hexId(s.parentSpanId),
          name: s.name ?? "",
          kind: s.kind ?? 0,
          startTimeUnixNano: String(s.startTimeUnixNano ?? "0"),
          endTimeUnixNano: String(s.endTimeUnixNano ?? "0"),
          attributes: flatten(s.attributes),
          events: (s.events ?? []).map((e) => ({
            name: e.name ?? "",
            timeUnixNano: String(e.timeUnixNano ?? "0"),
            attributes: flatten(e.attributes),
          })),
          status: { code: s.status?.code ?? 0, message: s.status?.message || undefined },
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return out;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });

/** A running receiver. */
export class OtlpReceiver {
  /** Every span received so far, in arrival order. */
  readonly spans: ReceivedSpan[] = [];
  /** Export requests received (including rejected ones), for asserting retries. */
  requests = 0;
  // Assigned in start(): the handler needs the instance before the server exists.
  #server!: Deno.HttpServer<Deno.NetAddr>;
  readonly #waiters = new Set<() => void>();

  private constructor() {}

  /** Base URL to use as `OTEL_EXPORTER_OTLP_ENDPOINT` (no trailing slash). */
  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Start listening on 127.0.0.1, port chosen by the OS. */
  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    const { promise: listening, resolve } = Promise.withResolvers<void>();
    receiver.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => resolve() },
      (req) => receiver.#handle(req),
    );
    await listening;
    return receiver;
  }

  async #handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (path !== "/v1/traces") return json(404, { message: `no OTLP signal at ${path}` });
    if (req.method !== "POST") return json(405, { message: "POST only" });
    this.requests++;
    const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") {
      return json(415, {
        message: `unsupported content-type "${type}"; this receiver accepts OTLP/HTTP JSON only`,
      });
    }
    let stream = req.body ?? new Blob([]).stream();
    const encoding = (req.headers.get("content-encoding") ?? "").toLowerCase();
    if (encoding === "gzip") stream = stream.pipeThrough(new DecompressionStream("gzip"));
    else if (encoding !== "" && encoding !== "identity") {
      return json(415, { message: `unsupported content-encoding "${encoding}"` });
    }
    let body: ExportRequest;
    try {
      body = JSON.parse(await new Response(stream).text());
    } catch {
      return json(400, { message: "body is not JSON" });
    }
    this.spans.push(...spansFromExportRequest(body));
    for (const wake of this.#waiters) wake();
    return json(200, { partialSuccess: {} });
  }

  /**
   * Resolve with all spans once `predicate(spans)` holds; reject after
   * `timeoutMs` with a message listing the span names seen.
   */
  waitForSpans(
    predicate: (spans: readonly ReceivedSpan[]) => boolean,
    timeoutMs = 5000,
  ): Promise<ReceivedSpan[]> {
    if (predicate(this.spans)) return Promise.resolve([...this.spans]);
    const { promise, resolve, reject } = Promise.withResolvers<ReceivedSpan[]>();
    const check = () => {
      if (!predicate(this.spans)) return;
      cleanup();
      resolve([...this.spans]);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `OtlpReceiver: condition not met in ${timeoutMs} ms; got ${this.spans.length} span(s): ` +
            JSON.stringify(this.spans.map((s) => s.name)),
        ),
      );
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      this.#waiters.delete(check);
    };
    this.#waiters.add(check);
    return promise;
  }

  /** Spans of one trace, for building a tree. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  /** Forget received spans (between cases that share a receiver). */
  clear(): void {
    this.spans.length = 0;
    this.requests = 0;
  }

  /** Stop the server. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
