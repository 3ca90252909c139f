// Sessions and leases: opening, one lease per source, renewal, every way of ending, and the
// per-session end callback the fronts rely on. Expiry by the timer uses real short TTLs and
// asserts only that it fired; everything else runs on an injected clock.
import t from "tap";
import type { Principal } from "../../src/pdp/principal.js";
import { RevocationList } from "../../src/auth/revocation.js";
import { normalizeAddress, SessionRegistry } from "../../src/auth/sessions.js";
import type { SessionEnded, SessionEvent } from "../../src/auth/sessions.js";

const T0 = Date.parse("2026-03-02T08:00:00Z");

function principal(sub: string, jti: string, expiresAt = T0 + 900_000, roles = ["historian"]): Principal {
  return { sub, iss: "ztgate-dev", roles, claims: { sub }, tokenId: jti, expiresAt, via: "bearer" };
}

/** A registry on a clock the test moves, recording every event in order. */
function registry() {
  let now = T0;
  let n = 0;
  const revocations = new RevocationList({ now: () => now });
  const reg = new SessionRegistry({ now: () => now, newId: () => `s${++n}`, revocations });
  const events: SessionEvent[] = [];
  for (const name of ["opened", "renewed", "ended"] as const) reg.on(name, (e: SessionEvent) => events.push(e));
  const setNow = (ms: number) => (now = ms);
  return { reg, events, revocations, setNow };
}

t.test("normalizeAddress: IPv4-mapped IPv6 is IPv4; not-addresses are undefined", async (t) => {
  t.equal(normalizeAddress("::ffff:10.20.1.5"), "10.20.1.5");
  t.equal(normalizeAddress("::FFFF:a14:105"), "10.20.1.5");
  t.equal(normalizeAddress("2001:DB8:0:0::1"), "2001:db8::1");
  t.equal(normalizeAddress("10.20.1.5"), "10.20.1.5");
  for (const bad of ["plant-net", "10.1", "010.1.2.3", "10.0.0.0/8", ""]) t.equal(normalizeAddress(bad), undefined, bad);
});

t.test("a lease is found by its source in any textual form", async (t) => {
  const { reg, events } = registry();
  const lease = reg.open(principal("hist-1", "j1"), { kind: "lease", protocol: "modbus", source: "::ffff:10.20.1.5" });
  t.equal(lease.source, "10.20.1.5");
  t.match(lease.principal, { sub: "hist-1", sessionId: lease.id, via: "lease" });
  t.equal(reg.lookupLease("10.20.1.5"), lease);
  t.equal(reg.lookupLease("::ffff:10.20.1.5"), lease);
  t.equal(reg.lookupLease("10.20.1.6"), undefined);
  t.equal(reg.lookupLease("nonsense"), undefined);
  t.match(events, [{ type: "opened", session: { id: "s1", kind: "lease", source: "10.20.1.5", sub: "hist-1", jti: "j1", roles: ["historian"] } }]);
  t.throws(() => reg.open(principal("x", "j"), { kind: "lease", protocol: "modbus", source: "plant-net" }), { code: "ZT_SESSION_INVALID", message: /not an IP address/ });
  t.throws(() => reg.open(principal("x", "j"), { kind: "lease", protocol: "modbus" }), { code: "ZT_SESSION_INVALID", message: /needs a source/ });
});

t.test("one lease per source: a new lease replaces the old, and both events are emitted", async (t) => {
  const { reg, events } = registry();
  const old = reg.open(principal("hist-1", "j1"), { kind: "lease", protocol: "modbus", source: "10.20.1.5" });
  const ends: SessionEnded[] = [];
  old.onEnd((e) => ends.push(e));
  const now = reg.open(principal("hist-2", "j2"), { kind: "lease", protocol: "modbus", source: "::ffff:10.20.1.5" });
  t.equal(reg.lookupLease("10.20.1.5"), now);
  t.match(ends, [{ why: "replaced", replacedBy: now.id, reason: "token-revoked", session: { id: old.id } }]);
  t.match(old.ended, { why: "replaced" });
  t.match(
    events.map((e) => [e.type, e.session.id]),
    [["opened", "s1"], ["ended", "s1"], ["opened", "s2"]],
  );
  t.match(events[2], { replaces: "s1" });
  t.same(reg.list().map((s) => s.id), ["s2"]);
});

t.test("revoke by id, by sub and by jti each fire the end callback with why", async (t) => {
  const { reg, events, revocations } = registry();
  const a = reg.open(principal("hist-1", "ja"), { kind: "session", protocol: "opcua" });
  const b = reg.open(principal("hist-1", "jb"), { kind: "lease", protocol: "modbus", source: "10.0.0.2" });
  const c = reg.open(principal("mes-1", "jc"), { kind: "session", protocol: "modbus" });
  const d = reg.open(principal("mes-2", "jc"), { kind: "session", protocol: "opcua" });
  const ended: Record<string, SessionEnded> = {};
  for (const s of [a, b, c, d]) s.onEnd((e) => (ended[s.id] = e));

  t.equal(reg.revokeById(a.id, "admin-1"), a);
  t.match(ended[a.id], { why: "revoked-id", by: "admin-1", reason: "token-revoked", session: { sub: "hist-1", jti: "ja" } });
  t.equal(revocations.check({ jti: "ja", sub: "hist-1", iat: T0 / 1000 + 1 }), undefined, "revoking a session leaves its token valid elsewhere");

  t.same(reg.revokeBySub("hist-1", "admin-1").map((s) => s.id), [b.id]);
  t.match(ended[b.id], { why: "revoked-sub", detail: /every session of the subject/ });
  t.equal(reg.lookupLease("10.0.0.2"), undefined, "the lease is gone");
  t.match(revocations.check({ sub: "hist-1", iat: T0 / 1000 - 5 }), /tokens of hist-1/, "and the subject's tokens are revoked");

  t.same(reg.revokeByJti("jc").map((s) => s.id), [c.id, d.id], "every session resting on the token");
  t.match(ended[c.id], { why: "revoked-jti" });
  t.match(ended[d.id], { why: "revoked-jti" });
  t.match(revocations.check({ jti: "jc", sub: "mes-1" }), /token jc was revoked/);

  t.same(reg.list(), []);
  t.equal(reg.revokeById("nope"), undefined);
  t.same(reg.revokeBySub("nobody"), []);
  t.equal(events.filter((e) => e.type === "ended").length, 4);
});

t.test("close is a normal end; onEnd after the end is called at once; unsubscribe works", async (t) => {
  const { reg } = registry();
  const s = reg.open(principal("hist-1", "j1"), { kind: "session", protocol: "opcua" });
  let calls = 0;
  const off = s.onEnd(() => calls++);
  off();
  t.equal(reg.close(s.id, "hist-1"), s);
  t.equal(calls, 0, "unsubscribed");
  t.match(s.ended, { why: "closed", by: "hist-1" });
  let late: SessionEnded | undefined;
  s.onEnd((e) => (late = e));
  t.match(late, { why: "closed" });
  t.equal(reg.close(s.id), undefined, "closing twice does nothing");
});

t.test("renew keeps the session and its callbacks and moves it to the new token", async (t) => {
  const { reg, events, setNow } = registry();
  const s = reg.open(principal("hist-1", "j1", T0 + 60_000), { kind: "lease", protocol: "modbus", source: "10.0.0.9" });
  let ended = false;
  s.onEnd(() => (ended = true));
  const r = reg.renew(s.id, principal("hist-1", "j2", T0 + 600_000));
  t.match(r, { ok: true, session: s });
  t.match(s.principal, { tokenId: "j2", sessionId: s.id, via: "lease", expiresAt: T0 + 600_000 });
  t.match(events.at(-1), { type: "renewed", previousJti: "j1", session: { jti: "j2" } });
  setNow(T0 + 120_000);
  t.same(reg.expireDue(), [], "the old token's exp no longer ends it");
  t.equal(ended, false);

  t.match(reg.renew(s.id, principal("mes-1", "j3")), { ok: false, error: "sub-mismatch", detail: /belongs to hist-1/ });
  t.match(reg.renew(s.id, { ...principal("hist-1", "j3"), iss: "other" }), { ok: false, error: "sub-mismatch" });
  t.match(reg.renew("nope", principal("hist-1", "j3")), { ok: false, error: "unknown-session" });
});

t.test("expireDue ends exactly the sessions whose token has expired", async (t) => {
  const { reg, setNow } = registry();
  const short = reg.open(principal("a", "j1", T0 + 1000), { kind: "session", protocol: "opcua" });
  const long = reg.open(principal("b", "j2", T0 + 5000), { kind: "session", protocol: "opcua" });
  const forever = reg.open({ sub: "cn=plc-tool", iss: "ztgate-dev-ca", roles: ["mes"], claims: {}, via: "mtls" }, { kind: "session", protocol: "modbus" });
  setNow(T0 + 999);
  t.same(reg.expireDue(), []);
  setNow(T0 + 1000);
  t.same(reg.expireDue(), [short]);
  t.match(short.ended, { why: "expired", reason: "token-expired", detail: "the token expired" });
  setNow(T0 + 10_000_000);
  t.same(reg.expireDue(), [long]);
  t.same(reg.list(), [forever], "a session without expiry (mTLS) stays");
  reg.stop();
});

t.test("expiry fires by itself (one timer, re-armed), with real short TTLs", async (t) => {
  const reg = new SessionRegistry();
  t.teardown(() => reg.stop());
  const ended = (s: { onEnd(l: (e: SessionEnded) => void): unknown }) =>
    new Promise<SessionEnded>((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error("the session did not end")), 10_000);
      s.onEnd((e) => {
        clearTimeout(guard);
        resolve(e);
      });
    });
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  const sessions = Array.from({ length: 20 }, (_, i) => reg.open(principal(`s${i}`, `j${i}`, Date.now() + 100 + 10 * i), { kind: "session", protocol: "opcua" }));
  const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  t.ok(timersAfter - timersBefore <= 1, `one timer for ${sessions.length} sessions (${timersAfter - timersBefore})`);
  const results = await Promise.all(sessions.map(ended));
  t.ok(results.every((e) => e.why === "expired"), "each ended as expired");
  t.same(reg.list(), []);
});

t.test("a listener that throws neither stops other sessions from ending nor escapes", async (t) => {
  const errors: unknown[] = [];
  const reg = new SessionRegistry({ onListenerError: (e) => errors.push(e) });
  const a = reg.open(principal("x", "j1"), { kind: "session", protocol: "opcua" });
  const b = reg.open(principal("x", "j2"), { kind: "session", protocol: "opcua" });
  a.onEnd(() => {
    throw new Error("front bug");
  });
  let bEnded = false;
  b.onEnd(() => (bEnded = true));
  reg.on("ended", () => {
    throw new Error("log bug");
  });
  t.equal(reg.revokeBySub("x").length, 2);
  t.ok(bEnded);
  t.equal(errors.length, 3, "the callback's error and the event listener's, twice");
  reg.stop();
});

t.test("onRevocation: every watcher is told of each revocation by sub or jti; the list keeps one listener", async (t) => {
  const list = new RevocationList();
  const reg = new SessionRegistry({ revocations: list });
  t.teardown(() => reg.stop());
  const told: number[] = [];
  const stops = Array.from({ length: 20 }, (_, i) => reg.onRevocation(() => told.push(i)));
  t.equal(list.listenerCount("revoked"), 1, "one listener on the list, not one per watcher (no MaxListeners warning)");
  reg.revokeBySub("mallory");
  t.equal(told.length, 20);
  stops.slice(0, 15).forEach((stop) => stop());
  reg.revokeByJti("jti-x");
  t.same(told.slice(20), [15, 16, 17, 18, 19], "the watchers still there");
  t.same(new SessionRegistry().onRevocation(() => t.fail("no list, nothing to watch"))(), undefined);
});
