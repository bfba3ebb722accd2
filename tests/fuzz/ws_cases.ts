/**
 * Generated WebSocket client messages: not JSON, not an object, no or a
 * non-string `type`, unknown types, invalid `turn` and `resume` messages
 * (bad ids, seqs, keys, traceparents, deep or huge values), binary frames.
 * The oracle mirrors `parseClientMessage` with the protocol's own schemas.
 */
import {
  MAX_WS_MESSAGE_BYTES,
  WS_CLOSE,
  WsAuthMessage,
  WsResumeMessage,
  WsTurnMessage,
} from "../../src/transport/ws_protocol.ts";
import type { ErrorType } from "../../src/shared/errors.ts";
import { type Fields, mutatedBody } from "./bodies.ts";
import type { FuzzWorld } from "./oracle.ts";
import type { Rng } from "./prng.ts";
import {
  badId,
  badIdempotencyKey,
  bogusTraceparent,
  deepArray,
  deepObject,
  HUGE_NUMBERS,
  unknownUuid,
  wrongTypeJson,
} from "./values.ts";

/** What the server must send back for one client message. */
export type WsExpect =
  | {
    kind: "error";
    error_type: ErrorType;
    /** The `in_reply_to` the error must carry. */
    in_reply_to: string | null;
  }
  | { kind: "pong" }
  /** The answer to a well-formed `auth` message: the socket's user. */
  | { kind: "authenticated"; user_id: string }
  /** The documented close for a message over 64 KiB. */
  | { kind: "close"; code: number };

/** One client message. */
export interface WsCase {
  family: string;
  note: string;
  data: string | Uint8Array<ArrayBuffer>;
  expect: WsExpect;
  /** Answered at once (no store lookup), so answers to a burst come in order. */
  sync: boolean;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * What the server answers to a text message, mirroring `parseClientMessage`
 * (null: a valid `turn` or `resume` the fuzz must not send as is).
 */
export function judgeWsText(
  text: string,
  world: FuzzWorld,
): { expect: WsExpect; sync: boolean } | null {
  if (new TextEncoder().encode(text).byteLength > MAX_WS_MESSAGE_BYTES) {
    // Not "sync": it ends the socket, so it cannot be part of a burst.
    return { expect: { kind: "close", code: WS_CLOSE.messageTooBig }, sync: false };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {
      expect: { kind: "error", error_type: "validation_error", in_reply_to: null },
      sync: true,
    };
  }
  const type = typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as { type?: unknown }).type
    : undefined;
  if (typeof type !== "string") {
    return {
      expect: { kind: "error", error_type: "validation_error", in_reply_to: null },
      sync: true,
    };
  }
  const invalid = { kind: "error", error_type: "validation_error", in_reply_to: type } as const;
  switch (type) {
    case "turn": {
      const parsed = WsTurnMessage.safeParse(value);
      if (!parsed.success) return { expect: invalid, sync: true };
      if (world.characters.includes(parsed.data.character_id)) return null;
      return {
        expect: { kind: "error", error_type: "character_not_found", in_reply_to: "turn" },
        sync: false,
      };
    }
    case "resume": {
      const parsed = WsResumeMessage.safeParse(value);
      if (!parsed.success) return { expect: invalid, sync: true };
      if (world.turns.includes(parsed.data.turn_id)) return null;
      return {
        expect: { kind: "error", error_type: "turn_not_found", in_reply_to: "resume" },
        sync: false,
      };
    }
    case "auth": {
      // Without DM_AUTH=jwt (or once authenticated) any well-formed auth is
      // answered with the socket's user, without a second verification.
      const parsed = WsAuthMessage.safeParse(value);
      if (!parsed.success) return { expect: invalid, sync: true };
      return { expect: { kind: "authenticated", user_id: world.wsUser ?? "local" }, sync: true };
    }
    case "ping": {
      // WsPingMessage is an object with type "ping"; extra fields are ignored.
      return { expect: { kind: "pong" }, sync: true };
    }
    default:
      return {
        expect: { kind: "error", error_type: "validation_error", in_reply_to: type.slice(0, 50) },
        sync: true,
      };
  }
}

const UNKNOWN_TYPES = [
  "",
  "PING",
  "Ping",
  "ping ",
  " ping",
  "pong",
  "done",
  "error",
  "start",
  "complete",
  "token",
  "turn\u0000",
  "TURN",
  "resume\n",
  "😀",
  "x".repeat(5000),
  "a" + "😀".repeat(30),
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "\ud800",
  "\u202eturn",
];

/** Draw one WebSocket message case. */
export function wsCase(rng: Rng, world: FuzzWorld): WsCase {
  for (let i = 0; i < 50; i++) {
    const [family, note, data] = draft(rng, world);
    if (typeof data !== "string") {
      return {
        family,
        note,
        data,
        expect: { kind: "error", error_type: "validation_error", in_reply_to: null },
        sync: true,
      };
    }
    const verdict = judgeWsText(data, world);
    if (verdict) return { family, note, data, ...verdict };
  }
  throw new Error("fuzz generator: 50 WebSocket drafts in a row were valid");
}

function turnFields(rng: Rng, world: FuzzWorld): Fields {
  const fields: Fields = [
    ["type", '"turn"'],
    [
      "character_id",
      JSON.stringify(rng.oneOf<string>([
        () => rng.pick(world.characters),
        () => unknownUuid(rng),
        () => badId(rng),
      ])),
    ],
    ["user_action", '"I listen at the door"'],
  ];
  if (rng.chance(0.4)) fields.push(["idempotency_key", JSON.stringify(badIdempotencyKey(rng))]);
  if (rng.chance(0.3)) {
    fields.push([
      "traceparent",
      rng.oneOf<string>([
        () => JSON.stringify(bogusTraceparent(rng)),
        () => JSON.stringify("x".repeat(513)),
        () => wrongTypeJson(rng),
      ]),
    ]);
  }
  return fields;
}

function draft(rng: Rng, world: FuzzWorld): [string, string, string | Uint8Array<ArrayBuffer>] {
  const encoder = new TextEncoder();
  return rng.oneOf<[string, string, string | Uint8Array<ArrayBuffer>]>([
    () => {
      const text = rng.pick([
        "",
        " ",
        "{",
        "nope",
        "{'type':'ping'}",
        "\u0000",
        "[",
        '{"type":"ping"',
        "ping",
        '{"type":"ping"}}',
        '{"type":"ping",}',
        "NaN",
        '{"type":"ping"}\u0000',
        rng.string(rng.int(1, 200), '{}[]":,abc\\ \u00ff\u0001'),
      ]);
      return ["ws: not JSON", JSON.stringify(text.slice(0, 30)), text];
    },
    () => {
      const text = rng.pick([
        "null",
        "[]",
        "42",
        '"ping"',
        "true",
        '[{"type":"ping"}]',
        rng.pick(HUGE_NUMBERS),
        deepArray(rng.int(100, 20_000)),
      ]);
      return ["ws: not an object", text.slice(0, 30), text];
    },
    () => {
      const text = rng.pick([
        "{}",
        '{"type":null}',
        '{"type":1}',
        '{"type":1e309}',
        '{"type":["ping"]}',
        '{"type":{}}',
        '{"TYPE":"ping"}',
        '{"type":true}',
        `{"type":${deepObject(rng.int(100, 5000))}}`,
        '{"typ":"turn"}',
      ]);
      return ["ws: no string type", text.slice(0, 30), text];
    },
    () => {
      const type = rng.pick(UNKNOWN_TYPES);
      const text = JSON.stringify({ type, character_id: rng.uuid() });
      return ["ws: unknown type", JSON.stringify(type.slice(0, 20)), text];
    },
    () => {
      const { body, note } = mutatedBody(rng, turnFields(rng, world), {
        character_id: 36,
        user_action: 8000,
      });
      let text: string;
      try {
        text = strictUtf8.decode(body);
      } catch {
        // Text frames must be UTF-8; invalid bytes are the raw-frame cases' job.
        text = new TextDecoder().decode(body);
      }
      return ["ws: bad turn", note, text];
    },
    () => {
      const fields = turnFields(rng, world);
      return [
        "ws: bad turn",
        "fields only",
        `{${fields.map(([k, v]) => `"${k}":${v}`).join(",")}}`,
      ];
    },
    () => {
      const turn = rng.oneOf<string>([
        () => JSON.stringify(rng.pick(world.turns)),
        () => JSON.stringify(unknownUuid(rng)),
        () => JSON.stringify(badId(rng)),
        () => wrongTypeJson(rng),
      ]);
      const seq = rng.pick([
        "-1",
        "1.5",
        '"3"',
        "1e309",
        "-1e309",
        "9007199254740993",
        "9007199254740992",
        "-0",
        "null",
        "true",
        "[]",
        "{}",
        "0",
        "3",
        '"-0"',
        deepArray(50),
      ]);
      const text = rng.chance(0.15)
        ? `{"type":"resume","turn_id":${turn}}`
        : `{"type":"resume","turn_id":${turn},"after_seq":${seq}}`;
      return ["ws: bad resume", `turn_id=${turn.slice(0, 40)} after_seq=${seq.slice(0, 20)}`, text];
    },
    () => {
      const data = rng.oneOf<Uint8Array<ArrayBuffer>>([
        () => encoder.encode('{"type":"ping"}'),
        () =>
          encoder.encode(
            JSON.stringify({ type: "turn", character_id: world.characters[0], user_action: "x" }),
          ),
        () => rng.bytes(rng.int(1, 512)),
        () => new Uint8Array(0),
      ]);
      return ["ws: binary frame", `${data.byteLength} bytes`, data];
    },
    () => {
      const text = rng.pick([
        '{"type":"auth"}',
        '{"type":"auth","token":""}',
        '{"type":"auth","token":null}',
        '{"type":"auth","token":42}',
        '{"type":"auth","token":["a"]}',
        `{"type":"auth","token":${JSON.stringify("t".repeat(8193))}}`,
        `{"type":"auth","token":${deepObject(rng.int(10, 2000))}}`,
        '{"type":"auth","token":"not-a-jwt"}',
        '{"type":"auth","token":"eyJhbGciOiJub25lIn0.e30."}',
      ]);
      return ["ws: auth", text.slice(0, 40), text];
    },
    () => {
      const text = rng.pick([
        '{"type":"ping","extra":1}',
        '{"type":"ping","__proto__":{"type":"turn"}}',
        ` {"type":"ping"} `,
        `{"type":"ping","deep":${deepArray(500)}}`,
        '{"type":"ping","type":"ping"}',
      ]);
      return ["ws: ping variants (valid)", text.slice(0, 30), text];
    },
  ]);
}
