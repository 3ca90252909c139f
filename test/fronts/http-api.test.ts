// The HTTP API's error classes on every route (SPEC §5.3, §9): a token table (none, malformed,
// expired, wrong audience, forged) → 401 with WWW-Authenticate, each a logged deny; gateway
// roles → 403 with the decision id; bad input → 400; oversized bodies → 413; the policy
// routes; the review page's files; health and metrics. All through fastify.inject against
// the real parts (test/fronts/http-setup.ts).
import t from "tap";
import { writeFileSync } from "node:fs";
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
  t.match(await api.call("GET", "/ui/missing.js"), { status: 404, body: { type: "urn:ztgate:error:not-found" } });
  t.equal((await api.call("GET", "/ui")).status, 301);
  t.match(await api.call("GET", "/v1/nothing"), { status: 404, body: { type: "urn:ztgate:error:not-found" } });
});
