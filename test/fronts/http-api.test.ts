// The HTTP API's error classes on every route (SPEC §5.3, §9): a token table (none, malformed,
// expired, wrong audience, forged) → 401 with WWW-Authenticate, each a logged deny; gateway
// roles → 403 with the decision id; bad input → 400; oversized bodies → 413; the policy
// routes; the review page's files; health and metrics. All through fastify.inject against
// the real parts (test/fronts/http-setup.ts).
import t from "tap";
import { once } from "node:events";
import { existsSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPair } from "jose";
import { issueToken } from "../../src/auth/issue.js";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { BOILER_POLICY, setupApi } from "./http-setup.js";
import type { Api } from "./http-setup.js";

type Route = readonly [method: "GET" | "POST" | "PUT", url: string, body?: unknown];
const ROUTES: readonly Route[] = [
  ["GET", "/v1/policy"],
  ["POST", "/v1/policy/reload"],
  ["GET", "/v1/decisions"],
  ["GET", "/v1/decisions/summary"],
  ["GET", "/v1/decisions/stream"],
  ["GET", "/v1/assets"],
  ["GET", "/v1/assets/boiler-plc/points/temperature"],
  ["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: 40 }],
  ["POST", "/v1/assets/boiler-plc/read", { target: "holding:100", count: 1 }],
  ["POST", "/v1/assets/boiler-plc/write", { target: "holding:100", values: [40] }],
];

async function records(api: Api): Promise<LogRecord[]> {
  await api.log.flush();
  const out: LogRecord[] = [];
  for await (const f of readLog(api.logDir)) if (f.record) out.push(f.record);
  return out;
}

t.test("every route: none, malformed, expired, wrong-audience and forged tokens → 401, each logged", async (t) => {
  const api = await setupApi(t);
  const { privateKey: otherKey } = await generateKeyPair("EdDSA");
  const tokens: Array<[string, string | undefined, string]> = [
    ["none", undefined, "token-invalid"],
    ["malformed", "not.a.jwt", "token-invalid"],
    ["expired", await api.token("aud-1", ["auditor", "admin", "mes"], { ttl: -120 }), "token-expired"],
    ["wrong audience", await api.token("aud-1", ["auditor", "admin", "mes"], { audience: "someone-else" }), "token-invalid"],
    ["forged", await issueToken({ key: otherKey, sub: "aud-1", roles: ["auditor", "admin", "mes"], ttl: 900 }), "token-invalid"],
  ];
  let expected = 0;
  for (const [method, url, body] of ROUTES) {
    for (const [name, tok, reason] of tokens) {
      const r = await api.call(method, url, { ...(tok !== undefined && { token: tok }), ...(body !== undefined && { body }) });
      t.equal(r.status, 401, `${method} ${url}, ${name} token`);
      t.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
      t.match(r.headers["www-authenticate"], /^Bearer realm="ztgate", error="invalid_token", error_description="[^"]+"$/);
      t.match(r.body, { type: `urn:ztgate:reason:${reason}`, status: 401, reason, detail: /./ }, `${method} ${url}, ${name}`);
      expected++;
    }
  }
  const denies = (await records(api)).filter((r) => r.type === "decision" && (r as { subject?: unknown }).subject === null);
  t.equal(denies.length, expected, "every refused token is a logged deny");
  t.match(denies.find((r) => (r as { asset?: string }).asset === "boiler-plc"), { decision: "deny", asset: "boiler-plc", client: { protocol: "http" } }, "asset routes log against the asset");
  t.match(denies[0], { decision: "deny", asset: null, target: { point: "policy" } }, "gateway routes log against the endpoint's resource");
});

t.test("gateway roles: 403 with the decision id; allows are logged with the granting setting", async (t) => {
  const api = await setupApi(t);
  const hist = await api.token("hist-1", ["historian"]);
  const auditor = await api.token("aud-1", ["auditor"]);
  const admin = await api.token("adm-1", ["admin"]);
  const cases: Array<[Route, string, RegExp]> = [
    [["GET", "/v1/policy"], hist, /gateway\.adminRoles.*gateway\.auditorRoles/],
    [["POST", "/v1/policy/reload"], hist, /gateway\.adminRoles/],
    [["POST", "/v1/policy/reload"], auditor, /reloading the policy needs one of the roles admin/],
    [["GET", "/v1/decisions"], hist, /gateway\.auditorRoles/],
    [["GET", "/v1/decisions"], admin, /auditor/],
    [["GET", "/v1/decisions/summary"], admin, /auditor/],
    [["GET", "/v1/decisions/stream"], admin, /auditor/],
  ];
  for (const [[method, url], tok, detail] of cases) {
    const r = await api.call(method, url, { token: tok });
    t.equal(r.status, 403, `${method} ${url}`);
    t.match(r.body, { type: "urn:ztgate:reason:no-matching-rule", reason: "no-matching-rule", decisionId: /^[0-9a-f-]{36}$/, detail });
  }
  t.equal((await api.call("GET", "/v1/policy", { token: auditor })).status, 200, "auditors read the policy status");
  t.equal((await api.call("GET", "/v1/policy", { token: admin })).status, 200, "admins too");
  const log = await records(api);
  const denied = log.filter((r) => (r as { decision?: string }).decision === "deny");
  t.equal(denied.length, cases.length);
  t.match(log.filter((r) => (r as { decision?: string }).decision === "allow"), [
    { rule: "gateway.auditorRoles", subject: { sub: "aud-1" }, target: { point: "policy" } },
    { rule: "gateway.adminRoles", subject: { sub: "adm-1" } },
  ]);
});

t.test("asset refusals: 403 with reason and decision id; unknown asset and point: 404, logged", async (t) => {
  const api = await setupApi(t);
  const hist = await api.token("hist-1", ["historian"]);
  const mes = await api.token("mes-1", ["mes"]);
  const cases: Array<[Route, string, number, string]> = [
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: 40 }], hist, 403, "no-matching-rule"],
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: 95 }], mes, 403, "value-out-of-range"],
    [["PUT", "/v1/assets/boiler-plc/points/burner_on", { value: true }], mes, 403, "denied-by-rule"],
    [["POST", "/v1/assets/boiler-plc/write", { target: "coil:0", values: [1] }], mes, 403, "denied-by-rule"],
    [["POST", "/v1/assets/boiler-plc/read", { target: "holding:300", count: 2 }], mes, 403, "no-matching-rule"],
    [["GET", "/v1/assets/boiler-plc/points/nope"], mes, 404, "unknown-point"],
    [["GET", "/v1/assets/no-such-plc/points/temperature"], mes, 404, "unknown-asset"],
    [["POST", "/v1/assets/no-such-plc/read", { target: "holding:0" }], mes, 404, "unknown-asset"],
  ];
  const refusals = new Map<string, string>();
  for (const [[method, url, body], tok, status, reason] of cases) {
    const r = await api.call(method, url, { token: tok, ...(body !== undefined && { body }) });
    t.equal(r.status, status, `${method} ${url} ${JSON.stringify(body ?? "")}`);
    t.match(r.body, { type: `urn:ztgate:reason:${reason}`, reason, decisionId: /^[0-9a-f-]{36}$/ });
    refusals.set(String(r.body?.["decisionId"]), reason);
  }
  const log = new Map((await records(api)).map((r) => [r.id, r]));
  for (const [id, reason] of refusals) t.match(log.get(id), { type: "decision", decision: "deny", reason }, `decision ${id} is in the log`);
});

t.test("bad input → 400 problems, never decided", async (t) => {
  const api = await setupApi(t);
  const mes = await api.token("mes-1", ["mes"]);
  const auditor = await api.token("aud-1", ["auditor"]);
  const cases: Array<[Route, string, RegExp]> = [
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: "abc" }], mes, /must be a number/],
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: 40.5 }], mes, /does not fit/],
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: null }], mes, /body\/value/],
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", {}], mes, /value/],
    [["PUT", "/v1/assets/boiler-plc/points/setpoint", { value: 40, extra: 1 }], mes, /additional/],
    [["POST", "/v1/assets/boiler-plc/write", { target: "holding:100", values: ["abc"] }], mes, /integer/],
    [["POST", "/v1/assets/boiler-plc/write", { target: "input:0", values: [1] }], mes, /read-only/],
    [["POST", "/v1/assets/boiler-plc/write", { target: "holding:100-102", values: [1] }], mes, /give that many values/],
    [["POST", "/v1/assets/boiler-plc/write", { target: "coil:1", values: [2] }], mes, /0 or 1/],
    [["POST", "/v1/assets/boiler-plc/read", { target: "register:1" }], mes, /pattern/],
    [["POST", "/v1/assets/boiler-plc/read", { target: "holding:0", count: 126 }], mes, /at most 125/],
    [["POST", "/v1/assets/boiler-plc/read", { target: "holding:65535", count: 2 }], mes, /past address 65535/],
    [["GET", "/v1/decisions?limit=5000"], auditor, /limit/],
    [["GET", "/v1/decisions?since=yesterday"], auditor, /since "yesterday"/],
    [["GET", "/v1/decisions?cursor=bm9wZQ"], auditor, /cursor/],
    [["GET", "/v1/decisions?colour=red"], auditor, /additional/],
    [["GET", "/v1/decisions?decision=maybe"], auditor, /allowed values/],
    [["GET", "/v1/assets/boiler-plc/points/pressure?maxAge=soon"], mes, /maxAge/],
    [["GET", "/v1/assets/boiler-plc/points/pressure?maxAge=-1"], mes, /maxAge/],
  ];
  const before = (await records(api)).length;
  for (const [[method, url, body], tok, detail] of cases) {
    const r = await api.call(method, url, { token: tok, ...(body !== undefined && { body }) });
    t.equal(r.status, 400, `${method} ${url} ${JSON.stringify(body ?? "")}`);
    t.match(r.body, { status: 400, type: /^urn:ztgate:error:/, detail }, `${method} ${url}: ${String(r.body?.["detail"])}`);
    t.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
  }
  const after = await records(api);
  t.notOk(after.slice(before).some((r) => r.type === "decision" && (r as { asset?: string }).asset === "boiler-plc"), "no bad value reached the policy");
  const bad = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: mes, payload: "{not json" });
  t.equal(bad.status, 400);
});

t.test("bodies larger than the limit → 413 problem", async (t) => {
  const api = await setupApi(t, { bodyLimit: 1024 });
  const mes = await api.token("mes-1", ["mes"]);
  for (const [method, url] of [["PUT", "/v1/assets/boiler-plc/points/setpoint"], ["POST", "/v1/assets/boiler-plc/write"], ["POST", "/v1/policy/reload"]] as const) {
    const r = await api.call(method, url, { token: mes, payload: JSON.stringify({ value: "x".repeat(2000) }) });
    t.equal(r.status, 413, url);
    t.match(r.body, { status: 413, title: "Request body too large", type: /body-too-large$/ });
  }
});

t.test("policy: status, reload by admins, a rejected change is reported and the old policy stays", async (t) => {
  const api = await setupApi(t);
  const admin = await api.token("adm-1", ["admin"]);
  const info = await api.call("GET", "/v1/policy", { token: admin });
  t.match(info.body, { revision: /^[0-9a-f]{16}$/, loadedAt: /^\d{4}-/, files: [{ asset: "boiler-plc", sha256: /^[0-9a-f]{64}$/ }], lastRejected: null });
  const revision = info.body?.["revision"];

  const same = await api.call("POST", "/v1/policy/reload", { token: admin });
  t.match(same, { status: 200, body: { ok: true, changed: false, revision } });

  const file = join(api.policyDir, "boiler-plc.yaml");
  writeFileSync(file, "asset: boiler-plc\nprotocol: modbus\nrules: [oops\n");
  const rejected = await api.call("POST", "/v1/policy/reload", { token: admin });
  t.equal(rejected.status, 422);
  t.match(rejected.body, { type: "urn:ztgate:error:policy-invalid", errors: [/boiler-plc\.yaml:\d+:\d+: /], detail: new RegExp(`revision ${String(revision)}\\) stays in force`) });
  const after = await api.call("GET", "/v1/policy", { token: admin });
  t.match(after.body, { revision, lastRejected: { trigger: "api", errors: [/boiler-plc\.yaml/], at: /^\d{4}-/ } });

  writeFileSync(file, BOILER_POLICY.replace("tcp://127.0.0.1:15020", `tcp://127.0.0.1:${api.plc.address()?.port}`).replace("min: 20, max: 80", "min: 20, max: 90"));
  const changed = await api.call("POST", "/v1/policy/reload", { token: admin });
  t.match(changed.body, { ok: true, changed: true, previousRevision: revision });
  const metrics = (await api.call("GET", "/metrics")).text;
  t.match(metrics, /ztgate_policy_reloads_total\{trigger="api"\} 1/);
  t.match(metrics, /ztgate_policy_rejections_total\{trigger="api"\} 1/);
  t.match(metrics, new RegExp(`ztgate_policy_info\\{revision="${String(changed.body?.["revision"])}"\\} 1`));
});

t.test("metrics move when decisions are made", async (t) => {
  const api = await setupApi(t);
  const value = async (line: RegExp) => {
    const r = await api.call("GET", "/metrics");
    t.equal(r.status, 200);
    t.match(r.headers["content-type"], /^text\/plain; version=0\.0\.4/);
    const m = new RegExp(`^${line.source} (\\d+)$`, "m").exec(r.text);
    return m ? Number(m[1]) : 0;
  };
  const allowed = /ztgate_decisions_total\{asset="boiler-plc",action="read",effect="allow",reason="allowed"\}/;
  const denied = /ztgate_decisions_total\{asset="boiler-plc",action="write",effect="deny",reason="no-matching-rule"\}/;
  const written = /ztgate_log_records_written_total/;
  t.equal(await value(allowed), 0);
  const hist = await api.token("hist-1", ["historian"]);
  for (let i = 0; i < 3; i++) t.equal((await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist })).status, 200);
  t.equal((await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: hist, body: { value: 30 } })).status, 403);
  await api.log.flush();
  t.equal(await value(allowed), 3);
  t.equal(await value(denied), 1);
  t.ok((await value(written)) >= 7, "3 decisions and 3 outcomes and 1 deny are on disk");
  const text = (await api.call("GET", "/metrics")).text;
  t.match(text, /ztgate_log_writable 1/);
  t.match(text, /ztgate_device_state\{protocol="modbus",endpoint="tcp:\/\/127\.0\.0\.1:\d+",state="connected"\} 1/);
  t.notMatch(text, /hist-1/, "no subject in any label");
  t.notMatch(text, /^nodejs_|^process_/m, "nothing of prom-client's default registry");
});

t.test("health, readiness and the review page's files", async (t) => {
  const api = await setupApi(t);
  t.match(await api.call("GET", "/healthz"), { status: 200, body: { status: "alive" } });
  t.match(await api.call("GET", "/readyz"), { status: 200, body: { status: "ready", checks: { decisionLog: { ok: true }, policy: { ok: true, detail: /^revision / } } } });

  const page = await api.call("GET", "/ui/");
  t.equal(page.status, 200);
  t.equal(page.headers["content-type"], "text/html; charset=utf-8");
  t.match(page.headers["content-security-policy"], /default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/);
  t.equal(page.headers["x-content-type-options"], "nosniff");
  t.match(page.text, /<script type="module" src="\/ui\/app\.js"><\/script>/);
  t.notMatch(page.text, /<script>|\son[a-z]+=/, "no inline script or handler (the CSP would block it)");
  t.match(await api.call("GET", "/ui/app.js"), { status: 200, headers: { "content-type": "text/javascript; charset=utf-8" } });
  t.match(await api.call("GET", "/ui/style.css"), { status: 200, headers: { "content-type": "text/css; charset=utf-8" } });
  t.match(await api.call("GET", "/ui/favicon.svg"), { status: 200, headers: { "content-type": "image/svg+xml" } });
  t.match(await api.call("GET", "/ui/missing.js"), { status: 404, body: { type: "urn:ztgate:error:not-found" } });
  t.equal((await api.call("GET", "/ui")).status, 301);
  t.match(await api.call("GET", "/v1/nothing"), { status: 404, body: { type: "urn:ztgate:error:not-found" } });
});

/** Decision and outcome records by decision id. */
async function byDecision(api: Api): Promise<{ decision: Map<string, Record<string, unknown>>; outcome: Map<string, Record<string, unknown>> }> {
  const decision = new Map<string, Record<string, unknown>>();
  const outcome = new Map<string, Record<string, unknown>>();
  for (const r of await records(api)) {
    const o = r as unknown as Record<string, unknown>;
    if (r.type === "decision") decision.set(r.id, o);
    if (r.type === "outcome") outcome.set(String(o["ref"]), o);
  }
  return { decision, outcome };
}

t.test("points on the simulated PLC through DevicePoints: read, write within limits, refuse outside", async (t) => {
  const api = await setupApi(t);
  const mes = await api.token("mes-1", ["mes"]);
  // Move the boiler off its whole-degree start, so the float32 decoding shows.
  api.plc.step(3.7);
  const temperature = api.plc.temperature();
  t.not(temperature, Math.round(temperature), `a fractional temperature (${temperature})`);
  const read = await api.call("GET", "/v1/assets/boiler-plc/points/temperature", { token: mes });
  t.equal(read.status, 200);
  t.match(read.body, { value: temperature, quality: "good", status: "Good", timestamp: /^\d{4}-\d\d-\d\dT/, decisionId: /^[0-9a-f-]{36}$/ });

  const write = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: mes, body: { value: 55 } });
  t.match(write, { status: 200, body: { value: 55, status: "ok", decisionId: /^[0-9a-f-]{36}$/ } });
  t.equal(api.plc.memory.holding[100], 55, "the PLC holds the new setpoint");
  t.match(await api.call("GET", "/v1/assets/boiler-plc/points/setpoint", { token: mes }), { status: 200, body: { value: 55, quality: "good" } });

  const outside = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: mes, body: { value: 95 } });
  t.equal(outside.status, 403);
  t.match(outside.body, { reason: "value-out-of-range", decisionId: /^[0-9a-f-]{36}$/, detail: /write of point setpoint on boiler-plc: value-out-of-range \(rule mes-setpoint\)/ });
  t.equal(api.plc.memory.holding[100], 55, "the refused value never reached the PLC");

  const log = await byDecision(api);
  t.match(log.decision.get(String(outside.body?.["decisionId"])), { decision: "deny", reason: "value-out-of-range", rule: "mes-setpoint", asset: "boiler-plc", action: "write", values: [{ point: "setpoint", value: 95 }] });
  t.notOk(log.outcome.has(String(outside.body?.["decisionId"])), "a refused write has no outcome");
  t.match(log.decision.get(String(write.body?.["decisionId"])), { decision: "allow", rule: "mes-setpoint", values: [{ point: "setpoint", value: 55, raw: [55] }] });
  t.match(log.outcome.get(String(write.body?.["decisionId"])), { status: "ok" });
  t.match(log.outcome.get(String(read.body?.["decisionId"])), { status: "ok" });
});

t.test("device trouble: PLC stopped → 503, PLC silent → 504, each with its outcome", async (t) => {
  const api = await setupApi(t, { deviceTimeoutMs: 300 });
  const hist = await api.token("hist-1", ["historian"]);
  const mes = await api.token("mes-1", ["mes"]);
  const port = api.plc.address()?.port as number;
  t.equal((await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist })).status, 200, "connected");
  const aged = await api.call("GET", "/v1/assets/boiler-plc/points/pressure?maxAge=5000", { token: hist });
  t.equal(aged.status, 200, "maxAge is taken");
  t.equal(aged.body?.["cacheAgeMs"], undefined, "a Modbus point is read from the device whatever the maxAge");

  await api.plc.stop();
  const down = await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist });
  t.equal(down.status, 503);
  t.match(down.body, { type: "urn:ztgate:reason:upstream-unavailable", reason: "upstream-unavailable", detail: /the device behind boiler-plc cannot be reached \(unavailable\)/ });
  t.equal(down.headers["content-type"], "application/problem+json; charset=utf-8");
  const downWrite = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: mes, body: { value: 50 } });
  t.equal(downWrite.status, 503, "a write too");
  const downRaw = await api.call("POST", "/v1/assets/boiler-plc/read", { token: hist, body: { target: "holding:100", count: 2 } });
  t.equal(downRaw.status, 503, "and a raw read");

  await api.plc.start({ port });
  // The device reconnects with backoff; reads are answered again once it has.
  let back = 0;
  for (let i = 0; i < 200 && back !== 200; i++) {
    back = (await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist })).status;
    if (back !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(back, 200, "answered again after the PLC came back");

  api.plc.setSilent(true);
  const silent = await api.call("GET", "/v1/assets/boiler-plc/points/temperature", { token: hist });
  t.equal(silent.status, 504);
  t.match(silent.body, { type: "urn:ztgate:error:device-timeout", detail: /the device behind boiler-plc gave no usable answer in time/ });
  const silentWrite = await api.call("POST", "/v1/assets/boiler-plc/write", { token: mes, body: { target: "holding:100", values: [45] } });
  t.equal(silentWrite.status, 504, "a raw write too");
  // The PLC may read a request after the gateway gave up on it (a stalled machine): only once
  // it has read both may it answer again, or the late write would land.
  for (const end = Date.now() + 10_000; api.plc.stats().dropped < 2 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  api.plc.setSilent(false);
  t.ok(api.plc.stats().dropped >= 2, "the PLC read the requests and did not answer");

  const log = await byDecision(api);
  const outcomes = [...log.outcome.values()].map((o) => o["status"]);
  t.ok(outcomes.includes("unavailable"), "an unavailable outcome is logged");
  t.ok(outcomes.includes("timeout"), "a timeout outcome is logged");
  const metrics = (await api.call("GET", "/metrics")).text;
  t.match(metrics, /ztgate_operation_device_seconds_count\{protocol="http",status="unavailable"\} [1-9]/);
  t.match(metrics, /ztgate_operation_device_seconds_count\{protocol="http",status="timeout"\} [1-9]/);
  t.match(metrics, /ztgate_device_state_changes_total\{protocol="modbus",endpoint="tcp:\/\/127\.0\.0\.1:\d+",state="down"\} [1-9]/);
});

t.test("raw reads and writes reach the PLC's registers", async (t) => {
  const api = await setupApi(t);
  const mes = await api.token("mes-1", ["mes"]);
  const hist = await api.token("hist-1", ["historian"]);
  const input = await api.call("POST", "/v1/assets/boiler-plc/read", { token: hist, body: { target: "input:0-2" } });
  t.match(input, { status: 200, body: { target: "input:0-2", decisionId: /^[0-9a-f-]{36}$/ } });
  t.same(input.body?.["values"], [...api.plc.memory.input.subarray(0, 3)], "the PLC's input registers 0-2");

  const write = await api.call("POST", "/v1/assets/boiler-plc/write", { token: mes, body: { target: "holding:100", values: [62] } });
  t.match(write, { status: 200, body: { target: "holding:100", status: "ok", decisionId: /^[0-9a-f-]{36}$/ } });
  t.equal(api.plc.memory.holding[100], 62);
  const back = await api.call("POST", "/v1/assets/boiler-plc/read", { token: mes, body: { target: "holding:100", count: 2 } });
  t.match(back, { status: 200, body: { target: "holding:100-101", values: [62, api.plc.memory.holding[101]] } });

  const outside = await api.call("POST", "/v1/assets/boiler-plc/write", { token: mes, body: { target: "holding:100", values: [99] } });
  t.match(outside, { status: 403, body: { reason: "value-out-of-range" } });
  t.equal(api.plc.memory.holding[100], 62, "the refused raw write never reached the PLC");
  const coil = await api.call("POST", "/v1/assets/boiler-plc/read", { token: hist, body: { target: "coil:0-1" } });
  t.match(coil, { status: 200, body: { values: [api.plc.memory.coils[0], api.plc.memory.coils[1]] } });
  const log = await byDecision(api);
  t.match(log.decision.get(String(write.body?.["decisionId"])), { decision: "allow", target: { table: "holding", address: 100, count: 1 }, values: [{ raw: [62] }] });
});

type Rec = LogRecord & Record<string, unknown>;
async function pages(api: Api, token: string, query: string): Promise<{ seqs: number[]; pages: number }> {
  const seqs: number[] = [];
  let cursor: string | null = null;
  let n = 0;
  do {
    const r = await api.call("GET", `/v1/decisions?${query}${cursor ? `&cursor=${cursor}` : ""}`, { token });
    if (r.status !== 200) throw new Error(`${query}: ${r.status} ${r.text}`);
    const page = r.body as { records: Rec[]; next: string | null };
    seqs.push(...page.records.map((x) => x.seq));
    cursor = page.next;
    n++;
  } while (cursor !== null && n < 1000);
  return { seqs, pages: n };
}

t.test("GET /v1/decisions: cursor paging both ways over several segments, no duplicates, no gaps", async (t) => {
  const api = await setupApi(t, { log: { segmentBytes: 4096 } });
  const hist = await api.token("hist-1", ["historian"]);
  const auditor = await api.token("aud-1", ["auditor"]);
  let rotations = 0;
  api.log.on("rotate", () => rotations++);
  for (let i = 0; i < 20; i++) await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist });
  for (let i = 0; i < 7; i++) await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: hist, body: { value: 30 + i } });
  await api.log.flush();
  t.ok(rotations >= 2, `the log spans several segments (${rotations + 1})`);
  const onDisk = (await records(api)).filter((r) => (r as Rec)["asset"] === "boiler-plc");
  const decisionSeqs = onDisk.filter((r) => r.type === "decision").map((r) => r.seq);
  t.equal(decisionSeqs.length, 27);

  const asc = await pages(api, auditor, "asset=boiler-plc&type=decision&order=asc&limit=4");
  t.same(asc.seqs, decisionSeqs, "oldest first: every decision once, in order");
  t.equal(asc.pages, 7, "27 records in pages of 4");
  const desc = await pages(api, auditor, "asset=boiler-plc&type=decision&limit=4");
  t.same(desc.seqs, [...decisionSeqs].reverse(), "newest first (the default): every decision once, in order");
  const denies = onDisk.filter((r) => (r as Rec)["decision"] === "deny").map((r) => r.seq);
  t.same((await pages(api, auditor, "asset=boiler-plc&decision=deny&order=asc&limit=3")).seqs, denies, "filtered: the denies");
  t.same((await pages(api, auditor, "asset=boiler-plc&decision=deny&limit=1000")).seqs, [...denies].reverse());
  t.same((await pages(api, auditor, "asset=boiler-plc&order=asc&limit=5")).seqs, onDisk.map((r) => r.seq), "outcomes too, without a type filter");

  // Records that land while a reader pages: newest-first pages stay below where they began;
  // oldest-first pages take the new records at the end.
  const first = await api.call("GET", "/v1/decisions?asset=boiler-plc&type=decision&limit=10", { token: auditor });
  const firstAsc = await api.call("GET", "/v1/decisions?asset=boiler-plc&type=decision&order=asc&limit=10", { token: auditor });
  for (let i = 0; i < 3; i++) await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist });
  await api.log.flush();
  const rest = await api.call("GET", `/v1/decisions?asset=boiler-plc&type=decision&limit=1000&cursor=${String(first.body?.["next"])}`, { token: auditor });
  const descSeqs = [...(first.body?.["records"] as Rec[]), ...(rest.body?.["records"] as Rec[])].map((r) => r.seq);
  t.same(descSeqs, [...decisionSeqs].reverse(), "newest first: the pages begun go on below, unaffected");
  const restAsc = await api.call("GET", `/v1/decisions?asset=boiler-plc&type=decision&order=asc&limit=1000&cursor=${String(firstAsc.body?.["next"])}`, { token: auditor });
  const ascSeqs = [...(firstAsc.body?.["records"] as Rec[]), ...(restAsc.body?.["records"] as Rec[])].map((r) => r.seq);
  t.equal(ascSeqs.length, 30, "oldest first: the 3 new ones at the end");
  t.same(ascSeqs.slice(0, 27), decisionSeqs);
  t.equal(restAsc.body?.["next"], null);

  const wrongWay = await api.call("GET", `/v1/decisions?order=asc&cursor=${String(first.body?.["next"])}`, { token: auditor });
  t.match(wrongWay, { status: 400, body: { detail: /cursor belongs to a newest-first \(order=desc\) query/ } });
  t.match(await api.call("GET", "/v1/decisions?limit=0", { token: auditor }), { status: 400 });
});

t.test("GET /v1/decisions/summary: exact counts per asset and subject, from a known log", async (t) => {
  const api = await setupApi(t, { feedPump: true });
  const hist = await api.token("hist-1", ["historian"]);
  const mes = await api.token("mes-1", ["mes"]);
  const auditor = await api.token("aud-1", ["auditor"]);
  const calls: ReadonlyArray<readonly ["GET" | "PUT", string, string | undefined, unknown, number]> = [
    ...Array.from({ length: 5 }, () => ["GET", "/v1/assets/boiler-plc/points/pressure", hist, undefined, 200] as const),
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", hist, { value: 40 }, 403],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", hist, { value: 41 }, 403],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", mes, { value: 55 }, 200],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", mes, { value: 95 }, 403],
    ["GET", "/v1/assets/feed-pump/points/flow", hist, undefined, 200],
    ["GET", "/v1/assets/feed-pump/points/flow", hist, undefined, 200],
    ["GET", "/v1/assets/feed-pump/points/flow", undefined, undefined, 401],
  ];
  for (const [method, url, token, body, status] of calls) {
    t.equal((await api.call(method, url, { ...(token !== undefined && { token }), ...(body !== undefined && { body }) })).status, status, url);
  }
  await api.log.flush();
  const all = await api.call("GET", "/v1/decisions/summary?gateway=false", { token: auditor });
  t.equal(all.status, 200);
  t.same(all.body, {
    total: { allow: 8, deny: 4 },
    byAsset: [
      { asset: "boiler-plc", allow: 6, deny: 3 },
      { asset: "feed-pump", allow: 2, deny: 1 },
    ],
    bySubject: [
      { subject: "hist-1", allow: 7, deny: 2 },
      { subject: "mes-1", allow: 1, deny: 1 },
      { subject: null, allow: 0, deny: 1 },
    ],
  }, "most denies first");
  t.same((await api.call("GET", "/v1/decisions/summary?asset=feed-pump", { token: auditor })).body, {
    total: { allow: 2, deny: 1 },
    byAsset: [{ asset: "feed-pump", allow: 2, deny: 1 }],
    bySubject: [{ subject: null, allow: 0, deny: 1 }, { subject: "hist-1", allow: 2, deny: 0 }],
  });
  t.same((await api.call("GET", "/v1/decisions/summary?subject=mes-1&decision=deny", { token: auditor })).body, {
    total: { allow: 0, deny: 1 },
    byAsset: [{ asset: "boiler-plc", allow: 0, deny: 1 }],
    bySubject: [{ subject: "mes-1", allow: 0, deny: 1 }],
  });
  const withGateway = await api.call("GET", "/v1/decisions/summary", { token: auditor });
  t.match((withGateway.body?.["byAsset"] as Array<{ asset: string | null }>).find((a) => a.asset === null), { allow: /* the auditor's own reads */ Number, deny: 0 }, "the gateway's endpoints, asset null");
  t.match(await api.call("GET", "/v1/decisions/summary?type=decision", { token: auditor }), { status: 400 }, "summaries are of decisions: no type filter");
});

/** Server-sent events from a fetch body, one at a time. */
function sse(body: ReadableStream<Uint8Array>): () => Promise<{ event: string; id?: string; data: string }> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return async () => {
    for (;;) {
      const at = buf.indexOf("\n\n");
      if (at >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        const ev: { event: string; id?: string; data: string } = { event: "message", data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) ev.event = line.slice(7);
          else if (line.startsWith("id: ")) ev.id = line.slice(4);
          else if (line.startsWith("data: ")) ev.data += line.slice(6);
        }
        if (ev.data === "" && ev.event === "message") continue; // a comment or retry
        return ev;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      buf += value;
    }
  };
}

t.test("GET /v1/decisions/stream on a real listener: a new decision arrives, filtered", async (t) => {
  const api = await setupApi(t, { feedPump: true });
  const base = await api.listen();
  const auditor = await api.token("aud-1", ["auditor"]);
  const hist = await api.token("hist-1", ["historian"]);
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`${base}/v1/decisions/stream?asset=boiler-plc&type=decision`, { headers: { authorization: `Bearer ${auditor}` }, signal: ac.signal });
  t.equal(res.status, 200);
  t.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  t.equal(res.headers.get("cache-control"), "no-store");
  const next = sse(res.body as ReadableStream<Uint8Array>);
  // Wait until the stream is subscribed: the feed has a listener.
  for (let i = 0; i < 1500 && api.feed.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(api.feed.size, 1, "the stream listens to the log");

  t.equal((await api.call("GET", "/v1/assets/feed-pump/points/flow", { token: hist })).status, 200, "a decision on another asset (filtered out)");
  const denied = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: hist, body: { value: 33 } });
  t.equal(denied.status, 403);
  const ev = await next();
  t.equal(ev.event, "record");
  const rec = JSON.parse(ev.data) as Rec;
  t.match(rec, { id: denied.body?.["decisionId"], type: "decision", decision: "deny", asset: "boiler-plc", subject: { sub: "hist-1" }, reason: "no-matching-rule" }, "the first event is the boiler decision");
  t.equal(ev.id, String(rec.seq), "the event id is the record's seq");
  const allowed = await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist });
  t.match(JSON.parse((await next()).data), { id: allowed.body?.["decisionId"], decision: "allow" }, "then the next one (its outcome is filtered out by type)");

  ac.abort();
  for (let i = 0; i < 1500 && api.feed.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(api.feed.size, 0, "a closed stream stops listening");
  const noRole = await fetch(`${base}/v1/decisions/stream`, { headers: { authorization: `Bearer ${hist}` } });
  t.equal(noRole.status, 403);
  t.equal(noRole.headers.get("content-type"), "application/problem+json; charset=utf-8");
  await noRole.body?.cancel();
});

t.test("GET /v1/decisions/stream ends when its token is revoked (by subject or by token id)", async (t) => {
  const api = await setupApi(t);
  const base = await api.listen();
  for (const how of ["sub", "jti"] as const) {
    const sub = `aud-${how}`;
    const token = await api.token(sub, ["auditor"], { jti: `jti-${how}` });
    const ac = new AbortController();
    t.teardown(() => ac.abort());
    const res = await fetch(`${base}/v1/decisions/stream`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    t.equal(res.status, 200);
    const next = sse(res.body as ReadableStream<Uint8Array>);
    for (let i = 0; i < 1500 && api.feed.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(api.feed.size, 1, `${how}: the stream listens`);
    if (how === "sub") api.sessions.revokeBySub(sub);
    else api.sessions.revokeByJti(`jti-${how}`);
    const ev = await next();
    t.same([ev.event, JSON.parse(ev.data)], ["end", { reason: "token-revoked" }], `${how}: the stream ends, saying why`);
    for (let i = 0; i < 1500 && api.feed.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(api.feed.size, 0, `${how}: and stops listening`);
  }
});

t.test("/readyz is 503 while the decision log cannot be written, 200 again after", { skip: existsSync("/dev/full") ? false : "no /dev/full on this system" }, async (t) => {
  const api = await setupApi(t, { log: { segmentBytes: 4096 } });
  const hist = await api.token("hist-1", ["historian"]);
  t.match(await api.call("GET", "/readyz"), { status: 200 });
  // The next segment's name points at /dev/full: the write after the rotation fails (ENOSPC).
  const next = join(api.logDir, "00000002.jsonl");
  symlinkSync("/dev/full", next);
  let denied: Awaited<ReturnType<Api["call"]>> | undefined;
  for (let i = 0; i < 500 && api.log.healthy(); i++) {
    const r = await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist });
    if (r.status !== 200) denied = r;
    await api.log.flush().catch(() => undefined);
  }
  t.equal(api.log.healthy(), false, "the log cannot be written");
  const ready = await api.call("GET", "/readyz");
  t.equal(ready.status, 503);
  t.match(ready.body, { type: "urn:ztgate:error:not-ready", title: "Not ready", detail: /decisionLog: cannot be written/ });
  t.equal(ready.headers["cache-control"], "no-store");
  const refused = denied ?? (await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist }));
  t.match(refused, { status: 503, body: { reason: "audit-unavailable" } }, "operations fail closed");
  t.match((await api.call("GET", "/metrics")).text, /^ztgate_log_writable 0$/m);
  t.match(await api.call("GET", "/healthz"), { status: 200 }, "alive all the same");

  rmSync(next);
  await once(api.log, "available");
  t.match(await api.call("GET", "/readyz"), { status: 200, body: { status: "ready", checks: { decisionLog: { ok: true, detail: "writable" } } } });
  t.equal((await api.call("GET", "/v1/assets/boiler-plc/points/pressure", { token: hist })).status, 200);
  t.match((await api.call("GET", "/metrics")).text, /^ztgate_log_writable 1$/m);
});
