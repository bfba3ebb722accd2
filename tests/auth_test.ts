/**
 * Identity and ownership over HTTP: JWT verification with jose (HS256 and a
 * real JWKS endpoint for RS256/ES256), 401s with WWW-Authenticate, and
 * nobody reaching another user's characters or turns.
 */
import assert from "node:assert/strict";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { ConfigError, loadConfig } from "../src/config.ts";
import { getJson, postJson, startTestServer } from "./helpers/server.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const JWT_ENV = {
  DM_AUTH: "jwt",
  DM_JWT_SECRET: SECRET,
  DM_JWT_ISSUER: "https://auth.example",
  DM_JWT_AUDIENCE: "dungeon-master",
};

async function hs256(
  sub: string,
  overrides: { iss?: string; aud?: string; exp?: number; secret?: string } = {},
) {
  return await new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuer(overrides.iss ?? JWT_ENV.DM_JWT_ISSUER)
    .setAudience(overrides.aud ?? JWT_ENV.DM_JWT_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(overrides.exp ?? Math.floor(Date.now() / 1000) + 3600)
    .sign(new TextEncoder().encode(overrides.secret ?? SECRET));
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const character = { name: "Aria", race: "Elf", class_name: "Ranger" };

Deno.test("DM_AUTH=none refuses a non-loopback host unless DM_ALLOW_INSECURE=true", () => {
  assert.throws(
    () => loadConfig({ DM_HOST: "0.0.0.0" }),
    (e: Error) => e instanceof ConfigError && /DM_ALLOW_INSECURE/.test(e.message),
  );
  assert.equal(loadConfig({ DM_HOST: "0.0.0.0", DM_ALLOW_INSECURE: "true" }).DM_HOST, "0.0.0.0");
  assert.equal(loadConfig({ DM_HOST: "0.0.0.0", ...JWT_ENV }).DM_AUTH, "jwt");
  for (const host of ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]) {
    assert.equal(loadConfig({ DM_HOST: host }).DM_HOST, host);
  }
  assert.throws(() => loadConfig({ DM_AUTH: "jwt" }), /DM_JWT_SECRET/);
});

Deno.test("token failures are 401 unauthorized with WWW-Authenticate", async () => {
  const t = await startTestServer(JWT_ENV);
  try {
    const none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." +
      btoa(
        JSON.stringify({
          sub: "eve",
          iss: JWT_ENV.DM_JWT_ISSUER,
          aud: JWT_ENV.DM_JWT_AUDIENCE,
          exp: 9999999999,
        }),
      )
        .replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_") +
      ".";
    const cases: Array<[string, Record<string, string>]> = [
      ["missing", {}],
      ["not bearer", { Authorization: "Basic dXNlcjpwYXNz" }],
      ["garbage", bearer("not.a.jwt")],
      ["expired", bearer(await hs256("alice", { exp: Math.floor(Date.now() / 1000) - 60 }))],
      ["wrong issuer", bearer(await hs256("alice", { iss: "https://evil.example" }))],
      ["wrong audience", bearer(await hs256("alice", { aud: "someone-else" }))],
      [
        "bad signature",
        bearer(await hs256("alice", { secret: "another-secret-another-secret-1234" })),
      ],
      ["alg none", bearer(none)],
    ];
    for (const [name, headers] of cases) {
      const res = await postJson(`${t.url}/characters`, character, headers);
      assert.equal(res.status, 401, name);
      assert.equal(res.body.detail.error.type, "unauthorized", name);
      assert.match(
        res.headers.get("www-authenticate") ?? "",
        /^Bearer realm="dungeon-master"/,
        name,
      );
    }
    const health = await getJson(`${t.url}/health`);
    assert.equal(health.status, 200, "probes need no token");
    const ok = await postJson(`${t.url}/characters`, character, bearer(await hs256("alice")));
    assert.equal(ok.status, 201);
  } finally {
    await t.close();
  }
});

Deno.test("two users cannot see or touch each other's characters or turns", async () => {
  const t = await startTestServer(JWT_ENV);
  try {
    const alice = bearer(await hs256("alice"));
    const bob = bearer(await hs256("bob"));
    const created = await postJson(`${t.url}/characters`, character, alice);
    const id = created.body.character_id;
    const turn = await postJson(
      `${t.url}/turn`,
      { character_id: id, user_action: "I look around" },
      alice,
    );
    assert.equal(turn.status, 200);

    const asBob = [
      await getJson(`${t.url}/characters/${id}`, bob),
      await postJson(`${t.url}/turn`, { character_id: id, user_action: "I steal it" }, bob),
    ];
    for (const res of asBob) {
      assert.equal(res.status, 404);
      assert.equal(res.body.detail.error.type, "character_not_found");
    }
    const record = await getJson(`${t.url}/turns/${turn.body.turn_id}`, bob);
    assert.equal(record.status, 404);
    assert.equal(record.body.detail.error.type, "turn_not_found");
    const unknown = await getJson(`${t.url}/characters/00000000-0000-4000-8000-000000000000`, bob);
    assert.deepEqual(
      [unknown.status, unknown.body.detail.error.type],
      [asBob[0].status, asBob[0].body.detail.error.type],
      "someone else's character looks exactly like a missing one",
    );
    const mine = await getJson(`${t.url}/characters/${id}`, alice);
    assert.equal(mine.body.turn_count, 1, "bob changed nothing");
  } finally {
    await t.close();
  }
});

Deno.test("RS256 and ES256 tokens verify against a JWKS endpoint", async () => {
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const ec = await generateKeyPair("ES256", { extractable: true });
  const keys: JWK[] = [
    { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
    { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
  ];
  const jwks = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json({ keys }),
  );
  const t = await startTestServer({
    DM_AUTH: "jwt",
    DM_JWT_JWKS_URL: `http://127.0.0.1:${jwks.addr.port}/.well-known/jwks.json`,
  });
  try {
    const sign = (alg: string, kid: string, key: Parameters<SignJWT["sign"]>[0]) =>
      new SignJWT({}).setProtectedHeader({ alg, kid }).setSubject("carol").setExpirationTime("1h")
        .sign(key);
    for (
      const token of [
        await sign("RS256", "rsa-1", rsa.privateKey),
        await sign("ES256", "ec-1", ec.privateKey),
      ]
    ) {
      const res = await postJson(`${t.url}/characters`, character, bearer(token));
      assert.equal(res.status, 201);
    }
    // An HS256 token "signed" with a public key must not pass (algorithm confusion).
    const forged = await new SignJWT({}).setProtectedHeader({ alg: "HS256", kid: "rsa-1" })
      .setSubject("carol")
      .setExpirationTime("1h").sign(new TextEncoder().encode(JSON.stringify(keys[0])));
    const res = await postJson(`${t.url}/characters`, character, bearer(forged));
    assert.equal(res.status, 401);
  } finally {
    await t.close();
    await jwks.shutdown();
  }
});

Deno.test("CORS is off by default and allows only configured origins", async () => {
  const off = await startTestServer();
  try {
    const res = await fetch(`${off.url}/health`, { headers: { Origin: "https://game.example" } });
    await res.body?.cancel();
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  } finally {
    await off.close();
  }
  const on = await startTestServer({ DM_CORS_ORIGINS: "https://game.example" });
  try {
    const pre = await fetch(`${on.url}/turn`, {
      method: "OPTIONS",
      headers: { Origin: "https://game.example", "Access-Control-Request-Method": "POST" },
    });
    await pre.body?.cancel();
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "https://game.example");
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /Idempotency-Key/);
    const other = await fetch(`${on.url}/health`, { headers: { Origin: "https://evil.example" } });
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  } finally {
    await on.close();
  }
});
