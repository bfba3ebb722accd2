/**
 * A store decorator that wraps every store operation in a span
 * (`db.system`, `db.operation.name`), so traces show where a turn spends
 * time in its journey log, whatever adapter holds it.
 *
 * @module
 */
import { SpanKind, SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import type { Store, TurnTransaction } from "./port.ts";

/** Span-wrap `fn` as the store operation `op`. */
async function inSpan<T>(
  tracer: Tracer,
  system: string,
  op: string,
  fn: () => Promise<T>,
): Promise<T> {
  return await tracer.startActiveSpan(`${system} ${op}`, {
    kind: SpanKind.CLIENT,
    attributes: { "db.system": system, "db.operation.name": op },
  }, async (span) => {
    try {
      return await fn();
    } catch (e) {
      span.recordException(e instanceof Error ? e : new Error(String(e)));
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw e;
    } finally {
      span.end();
    }
  });
}

/**
 * Wrap a store so its operations appear as spans. Event appends during
 * streams are not traced: they are batched across turns and would only add
 * noise to each trace.
 */
export function tracedStore(
  store: Store,
  tracer: Tracer = trace.getTracer("dungeon-master"),
): Store {
  const system = store.kind;
  const t = <T>(op: string, fn: () => Promise<T>) => inSpan(tracer, system, op, fn);
  return {
    kind: store.kind,
    ready: () => store.ready(),
    close: () => store.close(),
    appendEvents: (turn_id, events) => store.appendEvents(turn_id, events),
    createCharacter: (o, input, intro) =>
      t("createCharacter", () => store.createCharacter(o, input, intro)),
    loadContext: (o, id) => t("loadContext", () => store.loadContext(o, id)),
    getCharacter: (o, id) => t("getCharacter", () => store.getCharacter(o, id)),
    randomPois: (o, id, n) => t("randomPois", () => store.randomPois(o, id, n)),
    listPois: (o, id) => t("listPois", () => store.listPois(o, id)),
    beginTurn: (start) => t("beginTurn", () => store.beginTurn(start)),
    findIdempotent: (o, key, hash) => t("findIdempotent", () => store.findIdempotent(o, key, hash)),
    getTurn: (id) => t("getTurn", () => store.getTurn(id)),
    getEvents: (id, after) => t("getEvents", () => store.getEvents(id, after)),
    recoverInterrupted: () => t("recoverInterrupted", () => store.recoverInterrupted()),
    openTurn: (owner, character, turn): TurnTransaction => {
      const tx = store.openTurn(owner, character, turn);
      return {
        startQuest: (q) => tx.startQuest(q),
        advanceQuest: (p) => tx.advanceQuest(p),
        endQuest: (s) => tx.endQuest(s),
        setCombat: (c) => tx.setCombat(c),
        setStatus: (s) => tx.setStatus(s),
        createPoi: (p) => tx.createPoi(p),
        setLocation: (l) => tx.setLocation(l),
        appendNarrative: (n) => tx.appendNarrative(n),
        putPluginState: (p, v) => tx.putPluginState(p, v),
        commit: (outcome, events) => t("commitTurn", () => tx.commit(outcome, events)),
        fail: (type, events) => t("failTurn", () => tx.fail(type, events)),
      };
    },
  };
}
