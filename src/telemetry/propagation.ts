/**
 * W3C trace-context helpers used by the engine and transports. They use the
 * W3C propagator directly rather than the global one, so a client's
 * traceparent is honoured the same way whether or not the SDK is running.
 *
 * @module
 */
import {
  type Context,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

// Used directly rather than through the global propagator so that a client's
// traceparent is honoured the same way whether or not the SDK is running.
const w3c = new W3CTraceContextPropagator();
// A W3C traceparent is 55 characters; anything much longer is not one and is
// not worth running through the parser.
const MAX_TRACE_HEADER = 512;

/**
 * The parent context for a turn whose client sent a W3C `traceparent`
 * (and optionally `tracestate`). Returns the root context when the header is
 * absent or malformed, so the turn starts a new trace.
 *
 * @example
 * ```ts
 * const parent = parentContextFromTraceparent(request.headers.get("traceparent"));
 * tracer.startActiveSpan("turn", {}, parent, async (span) => { ... });
 * ```
 */
export function parentContextFromTraceparent(
  traceparent: string | null,
  tracestate?: string | null,
): Context {
  if (traceparent === null || traceparent.length > MAX_TRACE_HEADER) return ROOT_CONTEXT;
  const carrier: Record<string, string> = { traceparent };
  if (tracestate && tracestate.length <= MAX_TRACE_HEADER) carrier.tracestate = tracestate;
  return w3c.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
}

/**
 * The W3C `traceparent` of the span active in `ctx` (default: the active
 * context), e.g. for a response header; null when there is no valid span.
 */
export function traceparentFromContext(ctx: Context = context.active()): string | null {
  const carrier: Record<string, string> = {};
  w3c.inject(ctx, carrier, defaultTextMapSetter);
  return carrier.traceparent ?? null;
}
