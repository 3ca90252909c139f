// The session routes (SPEC §3, §5.3) through fastify's inject, with real tokens from the dev
// issuer key, the real verifier and session registry; refusals as RFC 9457 problems, and the
// gateway-role decisions and token refusals recorded. (The HTTPS listener itself is used by
// every lease of test/fronts/modbus.test.ts.)
import t from "tap";
import type { Test } from "tap";
import { join } from "node:path";
import { pino } from "pino";
import { initKeys, KEY_FILES, readPrivateKey } from "../../src/auth/keys.js";
import { issueToken } from "../../src/auth/issue.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import { SessionRegistry } from "../../src/auth/sessions.js";
import { RevocationList } from "../../src/auth/revocation.js";
import type { DecisionBody } from "../../src/audit/record.js";
import { buildHttpApp } from "../../src/fronts/http/app.js";
import { gatewayDecisionLog } from "../../src/fronts/http/decisions.js";
import { ZtError } from "../../src/errors.js";

const dir = t.testdir();
await initKeys(dir);
const key = await readPrivateKey(join(dir, KEY_FILES.issuerKey));
const verifier = await TokenVerifier.fromConfig([
  { issuer: "ztgate-dev", audience: "ztgate", publicKey: join(dir, KEY_FILES.issuerPublicKey), algorithms: ["EdDSA"], clockTolerance: 0, rolesClaim: "roles" },
]);
const token = (sub: string, roles: string[] = [], ttl = 900, jti?: string) => issueToken({ key, sub, roles, ttl, ...(jti !== undefined && { jti }) });

function setup(t: Test, opts: { failLog?: boolean; bodyLimit?: number; revocations?: RevocationList; verifier?: TokenVerifier } = {}) {
  const sessions = new SessionRegistry({ ...(opts.revocations && { revocations: opts.revocations }) });
  t.teardown(() => sessions.stop());
  const recorded: DecisionBody[] = [];
  let n = 0;
  const app = buildHttpApp({
    verifier: opts.verifier ?? verifier,
    sessions,
    gatewayRoles: { adminRoles: ["admin"], auditorRoles: ["auditor"] },
    log: pino({ level: "silent" }),
    decisions: gatewayDecisionLog({
      append: (body) => {
        if (opts.failLog) throw new ZtError("ZT_AUDIT_UNAVAILABLE", "disk full");
        recorded.push(body);
        return { id: `d${++n}` };
      },
      revision: () => "rev-1",
    }),
    ...(opts.bodyLimit !== undefined && { bodyLimit: opts.bodyLimit }),
  });
  t.teardown(() => app.close());
  const call = async (method: "GET" | "POST" | "DELETE", url: string, o: { token?: string; body?: unknown; payload?: string; type?: string } = {}) => {
    const r = await app.inject({
      method,
      url,
      headers: {
        ...(o.token !== undefined && { authorization: `Bearer ${o.token}` }),
        ...((o.body !== undefined || o.payload !== undefined) && { "content-type": o.type ?? "application/json" }),
      },
      ...(o.body !== undefined && { payload: JSON.stringify(o.body) }),
      ...(o.payload !== undefined && { payload: o.payload }),
    });
    return { status: r.statusCode, headers: r.headers, body: r.body === "" ? undefined : (JSON.parse(r.body) as Record<string, unknown>) };
  };
  return { app, sessions, recorded, call };
}

t.test("POST /v1/sessions opens a lease for the caller's address", async (t) => {
  const { call, sessions } = setup(t);
  const r = await call("POST", "/v1/sessions", { token: await token("hist-1", ["historian"]), body: { protocol: "modbus" } });
  t.equal(r.status, 201);
  t.match(r.body, { id: /^[0-9a-f-]{36}$/, sub: "hist-1", source: "127.0.0.1", expiresAt: /^\d{4}-\d\d-\d\dT/ });
  t.equal(r.headers["location"], `/v1/sessions/${r.body?.["id"]}`);
  const lease = sessions.lookupLease("127.0.0.1");
  t.equal(lease?.id, r.body?.["id"]);
  t.match(lease?.principal, { sub: "hist-1", roles: ["historian"], via: "lease" });
  t.same(await call("POST", "/v1/sessions", { token: await token("hist-1"), body: { protocol: "modbus", source: "::ffff:127.0.0.1" } }).then((x) => x.status), 201, "the caller's own address in another form needs no admin role");
});

t.test("missing, malformed and expired tokens: 401 problems with WWW-Authenticate, logged as denies", async (t) => {
  const { call, recorded } = setup(t);
  const cases: Array<[string | undefined, string]> = [
    [undefined, "token-invalid"],
    ["not.a.jwt", "token-invalid"],
    [await token("hist-1", [], -60), "token-expired"],
  ];
  for (const [tok, reason] of cases) {
    const r = await call("POST", "/v1/sessions", { ...(tok !== undefined && { token: tok }), body: { protocol: "modbus" } });
    t.equal(r.status, 401);
    t.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
    t.match(r.headers["www-authenticate"], /^Bearer realm="ztgate", error="invalid_token", error_description="[^"]+"$/);
    t.match(r.body, { type: `urn:ztgate:reason:${reason}`, status: 401, reason, instance: "/v1/sessions", detail: /./ });
  }
  t.match(recorded, [
    { decision: "deny", reason: "token-invalid", subject: null, asset: null, action: "write", target: { point: "sessions" }, client: { protocol: "http", address: "127.0.0.1" }, policyRevision: "rev-1" },
    { reason: "token-invalid" },
    { reason: "token-expired" },
  ]);
});

t.test("a lease for another source needs an admin role; both answers are logged", async (t) => {
  const { call, recorded, sessions } = setup(t);
  const denied = await call("POST", "/v1/sessions", { token: await token("hist-1", ["historian"]), body: { protocol: "modbus", source: "10.20.1.5" } });
  t.equal(denied.status, 403);
  t.match(denied.body, { type: "urn:ztgate:reason:no-matching-rule", reason: "no-matching-rule", decisionId: "d1", detail: /admin/ });
  t.equal(sessions.lookupLease("10.20.1.5"), undefined);

  const allowed = await call("POST", "/v1/sessions", { token: await token("root", ["admin"]), body: { protocol: "modbus", source: "10.20.1.5" } });
  t.equal(allowed.status, 201);
  t.match(allowed.body, { sub: "root", source: "10.20.1.5" });
  t.match(recorded, [
    { decision: "deny", reason: "no-matching-rule", rule: null, subject: { sub: "hist-1" } },
    { decision: "allow", reason: "allowed", rule: "gateway.adminRoles", subject: { sub: "root", roles: ["admin"] } },
  ]);
  t.equal((await call("POST", "/v1/sessions", { token: await token("root", ["admin"]), body: { protocol: "modbus", source: "not-an-ip" } })).status, 400);
});

t.test("bodies and params are checked: schema, JSON, media type, size", async (t) => {
  const { call } = setup(t, { bodyLimit: 1024 });
  const tok = await token("hist-1");
  const bad = async (o: Parameters<typeof call>[2], status: number, type: RegExp) => {
    const r = await call("POST", "/v1/sessions", { token: tok, ...o });
    t.equal(r.status, status, JSON.stringify(o).slice(0, 80));
    t.match(r.body, { type, status, title: /./, detail: /./ });
    t.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
  };
  await bad({ body: { protocol: "opcua" } }, 400, /validation/);
  await bad({ body: { protocol: "modbus", extra: 1 } }, 400, /validation/);
  await bad({ body: {} }, 400, /validation/);
  await bad({ payload: "{not json" }, 400, /urn:ztgate:error:/);
  await bad({ payload: "protocol=modbus", type: "application/x-www-form-urlencoded" }, 415, /urn:ztgate:error:/);
  await bad({ body: { protocol: "modbus", source: "x".repeat(2000) } }, 413, /urn:ztgate:error:/);
  const nf = await call("GET", "/v1/nothing-here");
  t.equal(nf.status, 404);
  t.match(nf.body, { type: "urn:ztgate:error:not-found", status: 404 });
});

t.test("GET /v1/sessions: one's own; an admin sees all", async (t) => {
  const { call, sessions } = setup(t);
  const hist = await token("hist-1", ["historian"]);
  await call("POST", "/v1/sessions", { token: hist, body: { protocol: "modbus" } });
  sessions.open({ sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], claims: {}, via: "bearer" }, { kind: "lease", protocol: "modbus", source: "10.0.0.9" });
  const own = await call("GET", "/v1/sessions", { token: hist });
  t.equal(own.status, 200);
  t.match(own.body, { sessions: [{ sub: "hist-1", kind: "lease", protocol: "modbus", via: "lease", source: "127.0.0.1", roles: ["historian"], jti: /^[0-9a-f-]{36}$/, openedAt: /T/, expiresAt: /T/ }] });
  t.equal((own.body?.["sessions"] as unknown[]).length, 1);
  const admin = await token("root", ["admin"]);
  t.equal(((await call("GET", "/v1/sessions", { token: admin })).body?.["sessions"] as unknown[]).length, 2);
  t.match((await call("GET", "/v1/sessions?sub=mes-1", { token: admin })).body, { sessions: [{ sub: "mes-1", jti: null, expiresAt: null }] });
  t.equal((await call("GET", "/v1/sessions?bogus=1", { token: admin })).status, 400);
  t.equal((await call("GET", "/v1/sessions")).status, 401);
});

t.test("DELETE /v1/sessions/:id: the owner closes, an admin revokes, anyone else is refused", async (t) => {
  const { call, sessions, recorded } = setup(t);
  const hist = await token("hist-1", ["historian"]);
  const mine = (await call("POST", "/v1/sessions", { token: hist, body: { protocol: "modbus" } })).body?.["id"] as string;
  const ended: string[] = [];
  sessions.on("ended", (e) => ended.push(`${e.session.id}:${e.why}:${e.by}`));

  const other = await call("DELETE", `/v1/sessions/${mine}`, { token: await token("mes-1", ["mes"]) });
  t.equal(other.status, 403);
  t.match(other.body, { reason: "no-matching-rule", decisionId: /^d\d+$/ });
  t.equal((await call("DELETE", `/v1/sessions/${mine}`, { token: hist })).status, 204);
  t.same(ended, [`${mine}:closed:hist-1`]);
  t.equal((await call("DELETE", `/v1/sessions/${mine}`, { token: hist })).status, 404, "gone");

  const theirs = sessions.open({ sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], claims: {}, via: "bearer" }, { kind: "lease", protocol: "modbus", source: "10.0.0.9" });
  t.equal((await call("DELETE", `/v1/sessions/${theirs.id}`, { token: await token("root", ["admin"]) })).status, 204);
  t.same(ended.at(-1), `${theirs.id}:revoked-id:root`);
  t.match(recorded.at(-1), { decision: "allow", rule: "gateway.adminRoles", subject: { sub: "root" } });
  t.equal((await call("DELETE", `/v1/sessions/${"x".repeat(65)}`, { token: hist })).status, 400, "params are checked");
});

t.test("POST /v1/sessions/:id/renew: a fresh token of the same subject, leases only", async (t) => {
  const { call, sessions } = setup(t);
  const first = await token("hist-1", ["historian"], 60);
  const id = (await call("POST", "/v1/sessions", { token: first, body: { protocol: "modbus" } })).body?.["id"] as string;
  const before = sessions.get(id)?.expiresAt as number;
  const fresh = await token("hist-1", ["historian"], 3600);
  const r = await call("POST", `/v1/sessions/${id}/renew`, { token: fresh });
  t.equal(r.status, 200);
  t.match(r.body, { id, sub: "hist-1", source: "127.0.0.1" });
  t.ok((sessions.get(id)?.expiresAt as number) > before, "the lease now lasts as long as the new token");
  const stranger = await call("POST", `/v1/sessions/${id}/renew`, { token: await token("mes-1", ["mes"]) });
  t.equal(stranger.status, 403);
  t.match(stranger.body, { detail: /belongs to hist-1/ });
  t.equal((await call("POST", `/v1/sessions/nope/renew`, { token: fresh })).status, 404);
  const tls = sessions.open({ sub: "hist-1", iss: "ztgate-dev", roles: ["historian"], claims: {}, via: "mtls" }, { kind: "session", protocol: "modbus", source: "127.0.0.1" });
  t.equal((await call("POST", `/v1/sessions/${tls.id}/renew`, { token: fresh })).status, 409);
});

t.test("renewing a lease opened for another address needs the admin role, as opening it did", async (t) => {
  const { call, sessions } = setup(t);
  const admin = await token("alice", ["admin"], 60);
  const opened = await call("POST", "/v1/sessions", { token: admin, body: { protocol: "modbus", source: "10.9.9.9" } });
  t.equal(opened.status, 201);
  const id = opened.body?.["id"] as string;
  // The same subject, no longer an admin: may not open such a lease, nor keep one alive.
  const demoted = await token("alice", ["historian"], 86_400);
  t.equal((await call("POST", "/v1/sessions", { token: demoted, body: { protocol: "modbus", source: "10.9.9.10" } })).status, 403);
  const r = await call("POST", `/v1/sessions/${id}/renew`, { token: demoted });
  t.equal(r.status, 403);
  t.match(r.body, { reason: "no-matching-rule", detail: /renewing lease .* opened for another source \(10\.9\.9\.9\) needs one of the roles admin/ });
  t.same(sessions.get(id)?.principal.roles, ["admin"], "the lease still rests on the admin token");
  t.equal((await call("POST", `/v1/sessions/${id}/renew`, { token: await token("alice", ["admin"], 3600) })).status, 200, "an admin token renews it");
});

t.test("an admin decision the log cannot take is refused (fail closed)", async (t) => {
  const { call } = setup(t, { failLog: true });
  const r = await call("POST", "/v1/sessions", { token: await token("root", ["admin"]), body: { protocol: "modbus", source: "10.0.0.1" } });
  t.equal(r.status, 503);
  t.match(r.body, { reason: "audit-unavailable" });
  t.equal((await call("POST", "/v1/sessions", { token: await token("root", ["admin"]), body: { protocol: "modbus" } })).status, 201, "using no admin power needs no record");
});

t.test("POST /v1/sessions/revoke: by subject or by token, admins only, logged; the tokens are refused afterwards", async (t) => {
  const revocations = new RevocationList();
  const checked = await TokenVerifier.fromConfig(
    [{ issuer: "ztgate-dev", audience: "ztgate", publicKey: join(dir, KEY_FILES.issuerPublicKey), algorithms: ["EdDSA"], clockTolerance: 0, rolesClaim: "roles" }],
    { revocations },
  );
  t.teardown(() => checked.close());
  const { call, sessions, recorded } = setup(t, { revocations, verifier: checked });
  const admin = await token("root", ["admin"]);
  const hist = await token("hist-1", ["historian"], 900, "tok-hist");
  const lease = (await call("POST", "/v1/sessions", { token: hist, body: { protocol: "modbus" } })).body?.["id"] as string;
  const other = sessions.open({ sub: "hist-1", iss: "ztgate-dev", roles: ["historian"], claims: {}, via: "mtls" }, { kind: "session", protocol: "modbus", source: "10.0.0.7" });
  const mes = await token("mes-1", ["mes"], 900, "tok-mes");
  const mesLease = sessions.open({ sub: "mes-1", iss: "ztgate-dev", roles: ["mes"], claims: {}, via: "bearer", tokenId: "tok-mes" }, { kind: "lease", protocol: "modbus", source: "10.0.0.9" }).id;
  const refused = await call("POST", "/v1/sessions/revoke", { token: hist, body: { sub: "mes-1" } });
  t.equal(refused.status, 403);
  t.match(refused.body, { type: "urn:ztgate:reason:no-matching-rule", detail: /revoking the tokens and sessions of subject mes-1 needs one of the roles admin \(gateway\.adminRoles\)/, decisionId: /^d\d+$/ });
  t.not(sessions.get(mesLease), undefined, "a refused revocation ends nothing");

  const bySub = await call("POST", "/v1/sessions/revoke", { token: admin, body: { sub: "hist-1" } });
  t.equal(bySub.status, 200);
  t.same(bySub.body, { sub: "hist-1", ended: [lease, other.id] });
  t.equal(sessions.list({ sub: "hist-1" }).length, 0);
  t.match((await call("GET", "/v1/sessions", { token: hist })).body, { reason: "token-revoked" }, "hist-1's token is refused from now on");
  t.match(recorded.at(-2), { decision: "allow", reason: "allowed", rule: "gateway.adminRoles", subject: { sub: "root" }, action: "write", target: { point: "sessions" } });

  const byJti = await call("POST", "/v1/sessions/revoke", { token: admin, body: { jti: "tok-mes" } });
  t.equal(byJti.status, 200);
  t.same(byJti.body, { jti: "tok-mes", ended: [mesLease] });
  t.equal(sessions.get(mesLease), undefined);
  t.equal((await call("GET", "/v1/sessions", { token: mes })).status, 401, "the revoked token is refused");
  t.equal((await call("GET", "/v1/sessions", { token: await token("mes-1", ["mes"]) })).status, 200, "another token of mes-1 is not");
  t.same((await call("POST", "/v1/sessions/revoke", { token: admin, body: { jti: "unused" } })).body, { jti: "unused", ended: [] }, "a token with no session is revoked all the same");

  for (const body of [{}, { sub: "a", jti: "b" }, { sub: "" }, { who: "x" }]) {
    const r = await call("POST", "/v1/sessions/revoke", { token: admin, body });
    t.equal(r.status, 400, JSON.stringify(body));
    t.match(r.body, { type: "urn:ztgate:error:validation" });
  }
  t.equal((await call("POST", "/v1/sessions/revoke", { body: { sub: "x" } })).status, 401);
});
