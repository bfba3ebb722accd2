/**
 * The OTLP trace sink of the benchmark, as its own process: the tests' real
 * OTLP/HTTP JSON receiver (`tests/fakes/otlp_receiver.ts`), which parses
 * every export like a collector would. Received spans are boiled down to a
 * few timings per turn and then dropped, so a long run keeps no history.
 *
 * Per turn (one trace) it keeps where the time to first token went, from the
 * service's own spans:
 *
 * - `pre_model_ms`: `turn` span start → `chat …` span start (the pipeline
 *   before the model call: prepare, gates, prompt),
 * - `model_first_token_ms`: `chat …` start → its `first_token` event (the
 *   request, the model's own TTFT, the SDK),
 * - `emit_ms`: the `chat …` `first_token` → the `turn` `first_token` event
 *   (narrative reader, event log).
 *
 * Prints `{"msg":"listening","url":…,"stats_url":…}` when ready (use `url`
 * as `OTEL_EXPORTER_OTLP_ENDPOINT`). `GET <stats_url>` answers the summaries
 * so far and starts afresh. On SIGTERM or SIGINT prints
 * `{"msg":"stopped","spans":<n>,"requests":<n>}` and exits.
 *
 * @module
 */
import { OtlpReceiver, type ReceivedSpan } from "../tests/fakes/otlp_receiver.ts";
import { round, summarize } from "./lib/stats.ts";

/** How often received spans are boiled down and dropped. */
const DRAIN_EVERY_MS = 500;
/** Traces seen without their turn span yet are kept this long at most. */
const PARTIAL_TTL_MS = 120_000;

const ms = (nanos: string) => Number(BigInt(nanos) / 1000n) / 1000;

interface Partial {
  seen: number;
  turnStart?: number;
  turnFirstToken?: number;
  chatStart?: number;
  chatFirstToken?: number;
}

if (import.meta.main) {
  const receiver = await OtlpReceiver.start();
  let spans = 0;
  let requests = 0;
  const partial = new Map<string, Partial>();
  let samples = {
    pre_model_ms: [] as number[],
    model_first_token_ms: [] as number[],
    emit_ms: [] as number[],
  };

  const take = (span: ReceivedSpan) => {
    const isTurn = span.name === "turn";
    const isChat = span.name.startsWith("chat ");
    if (!isTurn && !isChat) return;
    const p = partial.get(span.traceId) ?? { seen: Date.now() };
    const first = span.events.find((e) => e.name === "first_token");
    if (isTurn) {
      p.turnStart = ms(span.startTimeUnixNano);
      if (first) p.turnFirstToken = ms(first.timeUnixNano);
    } else {
      p.chatStart = ms(span.startTimeUnixNano);
      if (first) p.chatFirstToken = ms(first.timeUnixNano);
    }
    if (p.turnStart !== undefined && p.chatStart !== undefined) {
      partial.delete(span.traceId);
      samples.pre_model_ms.push(p.chatStart - p.turnStart);
      if (p.chatFirstToken !== undefined) {
        samples.model_first_token_ms.push(p.chatFirstToken - p.chatStart);
        if (p.turnFirstToken !== undefined) {
          samples.emit_ms.push(p.turnFirstToken - p.chatFirstToken);
        }
      }
    } else {
      partial.set(span.traceId, p);
    }
  };

  const drain = () => {
    spans += receiver.spans.length;
    requests += receiver.requests;
    for (const span of receiver.spans) take(span);
    receiver.clear();
    const old = Date.now() - PARTIAL_TTL_MS;
    for (const [id, p] of partial) if (p.seen < old) partial.delete(id);
  };
  const timer = setInterval(drain, DRAIN_EVERY_MS);

  const summary = (values: number[]) => {
    const s = summarize(values);
    return { n: s.n, p50: round(s.p50), p95: round(s.p95), p99: round(s.p99), max: round(s.max) };
  };
  const stats = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    drain();
    const body = {
      pre_model_ms: summary(samples.pre_model_ms),
      model_first_token_ms: summary(samples.model_first_token_ms),
      emit_ms: summary(samples.emit_ms),
    };
    samples = { pre_model_ms: [], model_first_token_ms: [], emit_ms: [] };
    return Response.json(body);
  });

  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGTERM", () => stopped.resolve());
  Deno.addSignalListener("SIGINT", () => stopped.resolve());
  console.log(
    JSON.stringify({
      msg: "listening",
      url: receiver.url,
      stats_url: `http://127.0.0.1:${stats.addr.port}/stats`,
    }),
  );
  await stopped.promise;
  clearInterval(timer);
  drain();
  await stats.shutdown();
  await receiver.close();
  console.log(JSON.stringify({ msg: "stopped", spans, requests }));
  Deno.exit(0);
}
