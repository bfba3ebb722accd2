/**
 * The fake model of the benchmark, as its own process: the tests' faithful
 * OpenAI fake (`tests/fakes/fake_openai.ts`) answering every request with the
 * same streamed outcome (`bench/lib/outcome.ts`), with a set time to first
 * token, delay between deltas and number of prose deltas.
 *
 * ```sh
 * deno run --allow-net bench/fake_llm_server.ts --ttft-ms 100 --delta-ms 50 --deltas 30
 * ```
 *
 * Prints one JSON line `{"msg":"listening","url":"http://127.0.0.1:<port>/v1"}`
 * when ready; on SIGTERM or SIGINT it stops and prints
 * `{"msg":"stopped","requests":<n>}`.
 *
 * @module
 */
import { FakeOpenAI } from "../tests/fakes/fake_openai.ts";
import { DELTA_CHARS, outcomeText } from "./lib/outcome.ts";

/** Settings of the fake model. */
export interface FakeLlmSettings {
  /** Milliseconds from the response's opening events to the first delta. */
  ttftMs: number;
  /** Milliseconds between deltas. */
  deltaMs: number;
  /** Deltas that carry prose. */
  deltas: number;
}

function numberArg(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(args[at + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} needs a number ≥ 0`);
  return value;
}

/** Parse `--ttft-ms`, `--delta-ms` and `--deltas`. */
export function parseArgs(args: string[]): FakeLlmSettings {
  return {
    ttftMs: numberArg(args, "--ttft-ms", 0),
    deltaMs: numberArg(args, "--delta-ms", 0),
    deltas: Math.max(1, Math.floor(numberArg(args, "--deltas", 40))),
  };
}

/** How often recorded requests are forgotten, so a long run keeps no history. */
const FORGET_EVERY_MS = 2000;

if (import.meta.main) {
  const settings = parseArgs(Deno.args);
  const { text } = outcomeText(settings.deltas);
  const fake = await FakeOpenAI.start();
  let requests = 0;
  const responder = () => {
    requests++;
    return {
      text,
      chunkSize: DELTA_CHARS,
      firstTokenDelayMs: settings.ttftMs,
      tokenDelayMs: settings.deltaMs,
    };
  };
  fake.script(responder);
  // The fake records every request for tests to inspect; a benchmark sends
  // tens of thousands, so forget them (reset also drops the responder).
  const forget = setInterval(() => {
    fake.reset();
    fake.script(responder);
  }, FORGET_EVERY_MS);
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log(JSON.stringify({ msg: "listening", url: fake.url, settings }));
  await stopped.promise;
  clearInterval(forget);
  await fake.close();
  console.log(JSON.stringify({ msg: "stopped", requests }));
  Deno.exit(0);
}
