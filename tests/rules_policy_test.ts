import assert from "node:assert/strict";
import { DmError } from "../src/errors.ts";
import type { RequestInfo } from "../src/http/router.ts";
import policyPlugin, {
  createPolicyService,
  type PolicyConfig,
  policyForTurn,
  policyFromConfig,
  policyRef,
} from "../plugins/policy/mod.ts";
import { CollectingHost, fakeTurnContext } from "./helpers/fake_turn_context.ts";

const TOKEN = "s3cret-admin-token";
const info: RequestInfo = {
  requestId: "req-1",
  userId: "local",
  remoteAddr: "127.0.0.1",
  route: "",
};

const valid: PolicyConfig = {
  quest_trigger_prob: 0.7,
  quest_cooldown_turns: 2,
  poi_trigger_prob: 0.5,
  poi_cooldown_turns: 1,
  memory_spark_probability: 0.4,
  quest_poi_reference_probability: 0.25,
  memory_spark_count: 4,
};

async function adminHost(env: Record<string, string> = { DM_ADMIN_TOKEN: TOKEN }) {
  return await new CollectingHost(env).load(policyPlugin);
}

function request(
  method: string,
  opts: { token?: string | null; body?: string; type?: string } = {},
) {
  const headers = new Headers();
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  if (opts.body !== undefined) headers.set("content-type", opts.type ?? "application/json");
  return new Request("http://dm.test/admin/policy", { method, headers, body: opts.body });
}

async function expectDmError(run: () => unknown, type: string): Promise<DmError> {
  let caught: unknown = null;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DmError, `expected DmError ${type}, got ${String(caught)}`);
  assert.equal(caught.type, type);
  return caught;
}

Deno.test("policy starts from the environment settings", async () => {
  const host = await adminHost({ DM_QUEST_TRIGGER_PROB: "0.55", DM_MEMORY_SPARK_COUNT: "7" });
  const policy = host.use(policyRef).current();
  assert.deepEqual(policy, {
    quest_trigger_prob: 0.55,
    quest_cooldown_turns: 5,
    poi_trigger_prob: 0.2,
    poi_cooldown_turns: 3,
    memory_spark_probability: 0.2,
    quest_poi_reference_probability: 0.1,
    memory_spark_count: 7,
  });
  assert.ok(Object.isFrozen(policy));
  assert.equal(host.stages.length, 0, "the policy plugin registers no stage");
});

Deno.test("replace puts a complete valid policy in force", () => {
  const service = createPolicyService(policyFromConfig(new CollectingHost().config));
  const after = service.replace({ ...valid });
  assert.deepEqual(after, valid);
  assert.deepEqual(service.current(), valid);
});

Deno.test("replace is all or nothing", async (t) => {
  const bad: [string, unknown][] = [
    ["missing field", { ...valid, memory_spark_count: undefined }],
    ["unknown field", { ...valid, extra: 1 }],
    ["probability above 1", { ...valid, poi_trigger_prob: 1.5 }],
    ["negative probability", { ...valid, quest_trigger_prob: -0.1 }],
    ["fractional cooldown", { ...valid, quest_cooldown_turns: 1.5 }],
    ["negative cooldown", { ...valid, poi_cooldown_turns: -1 }],
    ["spark count 0", { ...valid, memory_spark_count: 0 }],
    ["string number", { ...valid, quest_trigger_prob: "0.5" }],
    ["array", [valid]],
    ["null", null],
  ];
  for (const [name, value] of bad) {
    await t.step(name, async () => {
      const service = createPolicyService(valid);
      const before = service.current();
      await expectDmError(() => service.replace(value), "validation_error");
      assert.equal(service.current(), before, "the policy in force is untouched");
    });
  }
});

Deno.test("one turn sees one policy even when it is replaced mid-turn", () => {
  const service = createPolicyService(valid);
  const ctx = fakeTurnContext();
  const first = policyForTurn(service, ctx);
  service.replace({ ...valid, quest_trigger_prob: 0 });
  assert.equal(policyForTurn(service, ctx), first);
  assert.equal(
    policyForTurn(service, fakeTurnContext()).quest_trigger_prob,
    0,
    "the next turn sees it",
  );
});

Deno.test("without DM_ADMIN_TOKEN no admin route exists", async () => {
  const host = await adminHost({});
  assert.equal(host.routes.length, 0);
});

Deno.test("admin routes require the bearer token", async (t) => {
  const host = await adminHost();
  const get = host.route("GET", "/admin/policy")!;
  const put = host.route("PUT", "/admin/policy")!;
  assert.ok(get && put);
  for (
    const [name, token] of [["missing", null], ["wrong", "nope"], ["prefix", TOKEN.slice(0, -1)], [
      "longer",
      TOKEN + "x",
    ]] as const
  ) {
    await t.step(`${name} token`, async () => {
      const e = await expectDmError(
        () => get.handler(request("GET", { token }), {}, info),
        "unauthorized",
      );
      assert.equal(e.status, 401);
      assert.match(e.headers["WWW-Authenticate"] ?? "", /^Bearer/);
      await expectDmError(
        () => put.handler(request("PUT", { token, body: JSON.stringify(valid) }), {}, info),
        "unauthorized",
      );
    });
  }
  await t.step("wrong scheme", async () => {
    const req = new Request("http://dm.test/admin/policy", {
      headers: { authorization: `Basic ${TOKEN}` },
    });
    await expectDmError(() => get.handler(req, {}, info), "unauthorized");
  });
  assert.equal(host.use(policyRef).current().quest_trigger_prob, 0.3, "no PUT got through");
});

Deno.test("GET /admin/policy returns the policy in force", async () => {
  const host = await adminHost();
  const res = await host.route("GET", "/admin/policy")!.handler(request("GET"), {}, info);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), host.use(policyRef).current());
});

Deno.test("PUT /admin/policy replaces the policy and writes an audit line", async () => {
  const host = await adminHost();
  const before = host.use(policyRef).current();
  const res = await host.route("PUT", "/admin/policy")!.handler(
    request("PUT", { body: JSON.stringify(valid) }),
    {},
    info,
  );
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), valid);
  assert.deepEqual(host.use(policyRef).current(), valid);
  const audit = host.lines.find((l) => l.msg === "policy_updated");
  assert.ok(audit, "audit line written");
  assert.equal(audit.level, "info");
  assert.equal(audit.actor, "admin");
  assert.deepEqual(audit.before, before);
  assert.deepEqual(audit.after, valid);
  assert.ok(!JSON.stringify(host.lines).includes(TOKEN), "the token is never logged");
});

Deno.test("PUT /admin/policy rejects bad bodies and keeps the policy", async (t) => {
  const host = await adminHost();
  const put = host.route("PUT", "/admin/policy")!;
  const cases: [string, string, string][] = [
    ["partial", JSON.stringify({ quest_trigger_prob: 0.9 }), "validation_error"],
    ["unknown field", JSON.stringify({ ...valid, admin: true }), "validation_error"],
    ["out of range", JSON.stringify({ ...valid, poi_trigger_prob: 2 }), "validation_error"],
    ["not JSON", "{quest", "validation_error"],
    ["too large", JSON.stringify({ ...valid, pad: "x".repeat(70 * 1024) }), "payload_too_large"],
  ];
  for (const [name, body, type] of cases) {
    await t.step(name, async () => {
      await expectDmError(() => put.handler(request("PUT", { body }), {}, info), type);
    });
  }
  assert.equal(host.use(policyRef).current().quest_trigger_prob, 0.3);
  assert.ok(!host.lines.some((l) => l.msg === "policy_updated"));
});
