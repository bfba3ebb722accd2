/**
 * docs/api.md stays true to the code: its error table lists exactly the
 * catalogue with the same statuses, recoverable flags and messages, and its
 * close-code table lists every WebSocket close code the server uses.
 */
import assert from "node:assert/strict";
import { ERROR_CATALOGUE } from "../src/shared/errors.ts";
import { WS_CLOSE } from "../src/transport/ws_protocol.ts";

const doc = await Deno.readTextFile(new URL("../docs/api.md", import.meta.url));

function section(title: string): string {
  const start = doc.indexOf(`\n### ${title}\n`);
  assert.ok(start >= 0, `section ${title}`);
  const end = doc.indexOf("\n#", start + 5);
  return doc.slice(start, end < 0 ? undefined : end);
}

Deno.test("the documented error catalogue is the catalogue", () => {
  const rows = new Map<string, string[]>();
  for (const line of section("The catalogue").split("\n")) {
    const m = /^\| `([a-z_]+)` +\|(.*)\|$/.exec(line);
    if (m) rows.set(m[1], m[2].split("|").map((c) => c.trim()));
  }
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERROR_CATALOGUE).sort());
  for (const [type, spec] of Object.entries(ERROR_CATALOGUE)) {
    const [status, recoverable, message, when] = rows.get(type)!;
    assert.equal(Number(status), spec.status, type);
    assert.equal(recoverable, spec.recoverable ? "yes" : "no", type);
    assert.equal(message, spec.message, type);
    assert.ok(when.length > 0, `${type} says when`);
  }
});

Deno.test("every WebSocket close code is documented", () => {
  const table = section("Close codes");
  for (const code of Object.values(WS_CLOSE)) {
    assert.match(table, new RegExp(`^\\| \`${code}\` `, "m"), String(code));
  }
});
