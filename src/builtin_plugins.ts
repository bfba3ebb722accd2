/**
 * The built-in plugins, in load order. Their stage order comes from their
 * declared phases and before/after constraints, not from this list.
 *
 * @module
 */
import type { Plugin } from "./plugin/api.ts";
import policy from "../plugins/policy/mod.ts";
import memorySparks from "../plugins/memory-sparks/mod.ts";
import llmStream from "../plugins/llm-stream/mod.ts";
import outcomeParser from "../plugins/outcome-parser/mod.ts";
import quest from "../plugins/quest/mod.ts";
import combat from "../plugins/combat/mod.ts";
import poi from "../plugins/poi/mod.ts";
import narrative from "../plugins/narrative/mod.ts";
import sse from "../plugins/sse/mod.ts";
import websocket from "../plugins/websocket/mod.ts";
import web from "../plugins/web/mod.ts";

/** Built-in plugins: the game subsystems, the streaming transports, then the game page. */
export const BUILTIN_PLUGINS: readonly Plugin[] = [
  policy,
  memorySparks,
  llmStream,
  outcomeParser,
  quest,
  combat,
  poi,
  narrative,
  sse,
  websocket,
  web,
];
