// LeaseStore (leases.json beside the decision log) and the registry's side of it: what is kept
// (leases with their tokens, nothing else), what is read back, what a damaged file gives
// (nothing, said why), what restore refuses, and a write that fails.
import t from "tap";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LeaseStore } from "../../src/auth/lease-store.js";
import { SessionRegistry } from "../../src/auth/sessions.js";
import type { Principal } from "../../src/pdp/principal.js";

const principal = (sub: string, expiresAt: number): Principal => ({ sub, iss: "ztgate-dev", roles: ["historian"], claims: { iat: 1 }, tokenId: `j-${sub}`, expiresAt, via: "bearer" });

t.test("kept: open leases with their tokens, on every change; read back; restored", async (t) => {
  const dir = t.testdir({});
  const file = join(dir, "leases.json");
  let now = 1_000_000;
  const reg = new SessionRegistry({ now: () => now });
  t.teardown(() => reg.stop());
  const store = new LeaseStore(file, () => undefined);
  reg.persist(store);
  const a = reg.open(principal("hist-1", now + 60_000), { kind: "lease", protocol: "modbus", source: "::ffff:127.0.0.1", token: "token-a" });
  reg.open(principal("hist-2", now + 60_000), { kind: "session", protocol: "opcua", token: "not-a-lease" });
  reg.open(principal("hist-3", now + 60_000), { kind: "lease", protocol: "modbus", source: "127.0.0.3" }); // no token: cannot be verified again, not kept
  const gone = reg.open(principal("hist-4", now + 60_000), { kind: "lease", protocol: "modbus", source: "127.0.0.4", token: "token-d", forOther: true });
  await reg.leasesSaved();
  const read = async () => (await store.load()).leases.map((l) => [l.id, l.source, l.token, l.forOther]);
  t.same(await read(), [[a.id, "127.0.0.1", "token-a", undefined], [gone.id, "127.0.0.4", "token-d", true]], "leases only, the source normalized, each with its token (and whether an admin opened it for another address)");
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.notMatch(readFileSync(file, "utf8"), /hist-|roles|claims/, "the token, not what was read from it");
  reg.close(gone.id);
  t.ok(reg.renew(a.id, principal("hist-1", now + 120_000), "token-a2").ok);
  await reg.leasesSaved();
  t.same(await read(), [[a.id, "127.0.0.1", "token-a2", undefined]], "an ended lease leaves the file, a renewed one rests on its new token");
  t.ok(reg.renew(a.id, principal("hist-1", now + 120_000)).ok);
  await reg.leasesSaved();
  t.same(await read(), [], "renewed without a token: no longer kept (its old token no longer speaks for it)");

  const again = new SessionRegistry({ now: () => now });
  t.teardown(() => again.stop());
  const opened: unknown[] = [];
  again.on("opened", (e) => opened.push(e));
  const l = { id: a.id, source: "127.0.0.1", protocol: "modbus", openedAt: a.openedAt, token: "token-a2" };
  const r = again.restore(l, principal("hist-1", now + 60_000));
  t.equal(r?.id, a.id);
  t.equal(again.lookupLease("127.0.0.1"), r);
  t.match(r?.principal, { sub: "hist-1", sessionId: a.id, via: "lease" });
  t.match(opened, [{ type: "opened", restored: true, session: { id: a.id, kind: "lease" } }]);
  t.equal(again.restore(l, principal("hist-1", now + 60_000)), undefined, "an id or source already open is not restored twice");
  t.equal(again.restore({ ...l, id: "other" }, principal("hist-1", now + 60_000)), undefined, "nor a second lease for the same source");
  t.equal(again.restore({ ...l, id: "bad", source: "not-an-address" }, principal("hist-1", now + 60_000)), undefined);
  t.equal(again.restore({ ...l, id: "late", source: "127.0.0.5" }, principal("hist-1", now - 1)), undefined, "nor an expired one");
  now += 61_000;
  t.same(again.expireDue().map((s) => s.id), [a.id], "it ends when its token expires, as before the restart");
});

t.test("a missing file holds no lease; a damaged one gives none, saying why", async (t) => {
  const dir = t.testdir({ sub: {} });
  const load = async (text: string | undefined) => {
    const file = join(dir, "leases.json");
    if (text !== undefined) writeFileSync(file, text);
    return new LeaseStore(file, () => undefined).load();
  };
  writeFileSync(join(dir, "leases.json.0b1c.tmp"), '{"v":1,"leases":[{"token":"eyJ…"}]}');
  t.same(await load(undefined), { leases: [], problems: [] });
  t.throws(() => statSync(join(dir, "leases.json.0b1c.tmp")), { code: "ENOENT" }, "a temporary file a crash left (it holds tokens) is removed");
  t.same(await load('{ "token": "eyJsecret" '), { leases: [], problems: [`${join(dir, "leases.json")} is not JSON`] }, "no part of the text in the message");
  t.match(await load('{"v":2,"leases":[]}'), { leases: [], problems: [/expected an object with "v": 1/] });
  t.match(await load('{"v":1,"leases":{}}'), { leases: [], problems: [/expected/] });
  const good = { id: "a", source: "127.0.0.1", protocol: "modbus", openedAt: 1, token: "t" };
  const bad = [{ ...good, id: 1 }, { ...good, token: null }, { ...good, openedAt: "then" }, { ...good, protocol: "opcua" }, { ...good, forOther: "yes" }, null];
  const r = await load(JSON.stringify({ v: 1, leases: [good, ...bad] }));
  t.same(r.leases, [good]);
  t.equal(r.problems.length, bad.length, "one problem per entry left out");
  t.match(r.problems[0], /leases\[1\] is not a lease/);
  t.match(await new LeaseStore(join(dir, "sub"), () => undefined).load(), { leases: [], problems: [/cannot be read/] }, "a directory where the file should be");
});

t.test("a write that fails is reported, leasesSaved rejects, and it is tried again until it works", async (t) => {
  const dir = t.testdir({});
  const errors: Error[] = [];
  const reg = new SessionRegistry();
  t.teardown(() => reg.stop());
  // Root ignores permissions: a file where the directory should be makes the write fail instead.
  const blocker = join(dir, "blocked");
  writeFileSync(blocker, "x");
  const blocked = new LeaseStore(join(blocker, "leases.json"), (e) => errors.push(e));
  t.teardown(() => blocked.close());
  reg.persist(blocked);
  reg.open(principal("hist-1", Date.now() + 60_000), { kind: "lease", protocol: "modbus", source: "127.0.0.1", token: "tok" });
  await t.rejects(reg.leasesSaved(), /blocked\/leases\.json cannot be written/);
  t.ok(errors.length >= 1);
  // Make the place writable: replace the blocking file by a directory, then the retry writes.
  rmSync(blocker);
  mkdirSync(blocker);
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      if ((JSON.parse(readFileSync(join(blocker, "leases.json"), "utf8")) as { leases: unknown[] }).leases.length === 1) break;
    } catch {
      // not yet
    }
  }
  t.match(JSON.parse(readFileSync(join(blocker, "leases.json"), "utf8")), { v: 1, leases: [{ source: "127.0.0.1", token: "tok" }] }, "written by the retry");
  await t.resolves(reg.leasesSaved(), "and saved again");

  // Stopped: one last attempt if the last write failed, then nothing more is written.
  await blocked.close();
  reg.open(principal("hist-2", Date.now() + 60_000), { kind: "lease", protocol: "modbus", source: "127.0.0.2", token: "tok2" });
  await new Promise((r) => setTimeout(r, 200));
  t.equal((JSON.parse(readFileSync(join(blocker, "leases.json"), "utf8")) as { leases: unknown[] }).leases.length, 1, "no write after close");
});
