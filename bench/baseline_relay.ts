/**
 * The baseline of the benchmark: the least a server can do to stream a model
 * to players. Per request it calls the model through the same `openai` SDK
 * (Responses API, streaming) and relays its text deltas — no store, no
 * pipeline, no validation, no telemetry.
 *
 * - `POST /turn/stream` with `{"user_action": "..."}`: `text/event-stream`,
 *   one frame per delta (`id: <n>` + `data: {"type":"token","seq":n,"content":…}`),
 *   then `data: [DONE]`. Headers go out before the model is called, as the
 *   service's do.
 * - `GET /ws`: a WebSocket; each `{"type":"turn","user_action":…}` is answered
 *   with `{"type":"token",…}` messages and then `{"type":"done"}`.
 * - `GET /health`: 200.
 *
 * Settings (environment): `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `RELAY_PORT`
 * (0: any free port), `RELAY_MODEL`, `RELAY_MAX_UPSTREAM` (model calls at
 * once; more wait in FIFO order with their stream open, like the service's
 * `DM_MAX_CONCURRENT_LLM`), `RELAY_REQUEST_FILE` (JSON
 * `{instructions, input, schema_name, schema}`: send the model this
 * request, the player's action appended to `input` — the benchmark passes
 * the request dungeon-master makes, so both ask the model the same),
 * `RELAY_NO_MODEL=true` (call no model: answer one token and hold the stream
 * until the client leaves — what an open stream costs Deno itself). Listens
 * on 127.0.0.1 only and prints `{"msg":"listening","url":…}`.
 *
 * @module
 */
import OpenAI from "openai";
import type { ModelRequestShape } from "./lib/dm_request.ts";

const encoder = new TextEncoder();

/** Relay settings. */
interface RelaySettings {
  baseURL: string;
  apiKey: string;
  port: number;
  model: string;
  maxUpstream: number;
  request: ModelRequestShape | null;
  noModel: boolean;
}

function settingsFromEnv(): RelaySettings {
  const baseURL = Deno.env.get("OPENAI_BASE_URL");
  if (!baseURL) throw new Error("OPENAI_BASE_URL is required");
  const requestFile = Deno.env.get("RELAY_REQUEST_FILE");
  return {
    baseURL,
    apiKey: Deno.env.get("OPENAI_API_KEY") ?? "bench",
    port: Number(Deno.env.get("RELAY_PORT") ?? "0"),
    model: Deno.env.get("RELAY_MODEL") ?? "gpt-5.1",
    maxUpstream: Number(Deno.env.get("RELAY_MAX_UPSTREAM") ?? "1000000"),
    request: requestFile ? JSON.parse(Deno.readTextFileSync(requestFile)) : null,
    noModel: Deno.env.get("RELAY_NO_MODEL") === "true",
  };
}

/** A FIFO semaphore for model calls. */
class Slots {
  #free: number;
  #queue: Array<() => void> = [];
  constructor(max: number) {
    this.#free = max;
  }
  acquire(signal: AbortSignal): Promise<boolean> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", leave);
        resolve(true);
      };
      const leave = () => {
        const at = this.#queue.indexOf(grant);
        if (at !== -1) this.#queue.splice(at, 1);
        resolve(false);
      };
      this.#queue.push(grant);
      signal.addEventListener("abort", leave, { once: true });
    });
  }
  release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#free++;
  }
}

const INSTRUCTIONS = "You are the game master of a text adventure. Answer with one JSON object.";

/** Stream one completion's text deltas to `send`. */
async function relay(
  client: OpenAI,
  slots: Slots,
  s: RelaySettings,
  action: string,
  signal: AbortSignal,
  send: (delta: string) => void,
): Promise<void> {
  if (s.noModel) {
    send("hold");
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    return;
  }
  if (!(await slots.acquire(signal))) return;
  try {
    const r = s.request;
    const stream = await client.responses.create(
      r
        ? {
          model: s.model,
          instructions: r.instructions,
          input: `${r.input}\n\n${action}`,
          stream: true,
          max_output_tokens: 4000,
          text: {
            format: { type: "json_schema", name: r.schema_name, schema: r.schema, strict: true },
          },
        }
        : {
          model: s.model,
          instructions: INSTRUCTIONS,
          input: action,
          stream: true,
          max_output_tokens: 4000,
        },
      { signal },
    );
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") send(event.delta);
    }
  } finally {
    slots.release();
  }
}

function actionOf(value: unknown): string {
  const action = (value as { user_action?: unknown } | null)?.user_action;
  return typeof action === "string" && action !== "" ? action : "look around";
}

if (import.meta.main) {
  const s = settingsFromEnv();
  const client = new OpenAI({ apiKey: s.apiKey, baseURL: s.baseURL, maxRetries: 0 });
  const slots = new Slots(s.maxUpstream);

  const sse = async (request: Request): Promise<Response> => {
    let action: string;
    try {
      action = actionOf(await request.json());
    } catch {
      return new Response("bad json", { status: 422 });
    }
    const abort = new AbortController();
    request.signal.addEventListener("abort", () => abort.abort(), { once: true });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let seq = 0;
        const frame = (data: string) => {
          try {
            controller.enqueue(encoder.encode(data));
          } catch { /* the client went away */ }
        };
        relay(client, slots, s, action, abort.signal, (delta) => {
          seq++;
          frame(
            `id: ${seq}\ndata: ${JSON.stringify({ type: "token", seq, content: delta })}\n\n`,
          );
        }).then(
          () => frame("data: [DONE]\n\n"),
          (e) => {
            if (!abort.signal.aborted) {
              frame(`data: ${JSON.stringify({ type: "error", message: String(e) })}\n\n`);
            }
          },
        ).finally(() => {
          try {
            controller.close();
          } catch { /* already closed */ }
        });
      },
      cancel() {
        abort.abort();
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  };

  const ws = (request: Request): Response => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    let current: AbortController | null = null;
    socket.onclose = () => current?.abort();
    socket.onerror = () => {};
    socket.onmessage = (e) => {
      if (current || typeof e.data !== "string") return;
      let action: string;
      try {
        action = actionOf(JSON.parse(e.data));
      } catch {
        return;
      }
      const abort = new AbortController();
      current = abort;
      let seq = 0;
      const send = (message: unknown) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
      };
      relay(client, slots, s, action, abort.signal, (delta) => {
        send({ type: "token", seq: ++seq, content: delta });
      }).catch((err) => {
        if (!abort.signal.aborted) send({ type: "error", message: String(err) });
      }).finally(() => {
        current = null;
        send({ type: "done" });
      });
    };
    return response;
  };

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: s.port, onListen: () => {} },
    (request) => {
      const path = new URL(request.url).pathname;
      if (request.method === "POST" && path === "/turn/stream") return sse(request);
      if (request.method === "GET" && path === "/ws") return ws(request);
      if (path === "/health") return new Response("ok");
      return new Response("not found", { status: 404 });
    },
  );
  // Nothing to drain or flush: a relay has no state, so it just exits.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  Deno.addSignalListener("SIGINT", () => Deno.exit(0));
  console.log(JSON.stringify({ msg: "listening", url: `http://127.0.0.1:${server.addr.port}` }));
  await server.finished;
}
