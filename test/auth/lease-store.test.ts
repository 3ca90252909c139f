// LeaseStore (keys.dir/leases.json) and SessionRegistry.restore: what is kept, what is read
// back, what a damaged file gives (nothing, said why), and what restore refuses.
import t from "tap";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LeaseStore } from "../../src/auth/lease-store.js";
import { SessionRegistry } from "../../src/auth/sessions.js";
import type { Principal } from "../../src/pdp/principal.js";

const principal = (sub: string, expiresAt: number): Principal => ({ sub, iss: "ztgate-dev", roles: ["historian"], claims: { iat: 1, site: "north" }, tokenId: `j-${sub}`, expiresAt, via: "bearer" });

t.test("kept and read back: the open leases, their principals, 0600", async (t) => {
  const dir = t.testdir({});
  const file = join(dir, "leases.json");
  let now = 1_000_000;
  const reg = new SessionRegistry({ now: () => now });
  t.teardown(() => reg.stop());
  const errors: Error[] = [];
  const store = new LeaseStore(file, (e) => errors.push(e));
  const a = reg.open(principal("hist-1", now + 60_000), { kind: "lease", protocol: "modbus", source: "::ffff:127.0.0.1" });
  reg.open(principal("hist-2", now + 60_000), { kind: "session", protocol: "opcua" });
  store.save(() => reg.list({ kind: "lease" }));
  store.save(() => reg.list({ kind: "lease" })); // close together: one write
  await store.saved();
  t.same(errors, []);
  t.equal(statSync(file).mode & 0o777, 0o600);
  const loaded = await store.load();
  t.same(loaded.problems, []);
  t.same(loaded.leases.map((l) => [l.id, l.source, l.protocol, l.principal.sub, l.principal.claims]), [[a.id, "127.0.0.1", "modbus", "hist-1", { iat: 1, site: "north" }]], "leases only, the source normalized");

  const again = new SessionRegistry({ now: () => now });
  t.teardown(() => again.stop());
  const opened: unknown[] = [];
  again.on("opened", (e) => opened.push(e));
  const l = loaded.leases[0]!;
  const r = again.restore(l);
  t.equal(r?.id, a.id);
  t.equal(again.lookupLease("127.0.0.1"), r);
  t.match(r?.principal, { sub: "hist-1", sessionId: a.id, via: "lease" });
  t.match(opened, [{ type: "opened", restored: true, session: { id: a.id, kind: "lease" } }]);
  t.equal(again.restore(l), undefined, "an id or source already open is not restored twice");
  t.equal(again.restore({ ...l, id: "other" }), undefined, "nor a second lease for the same source");
  t.equal(again.restore({ ...l, id: "bad", source: "not-an-address" }), undefined);
  t.equal(again.restore({ ...l, id: "late", source: "127.0.0.5", principal: { ...l.principal, expiresAt: now - 1 } }), undefined, "nor an expired one");
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
  t.same(await load(undefined), { leases: [], problems: [] });
  t.match(await load("{ not json"), { leases: [], problems: [/is not JSON/] });
  t.match(await load('{"v":2,"leases":[]}'), { leases: [], problems: [/expected an object with "v": 1/] });
  t.match(await load('{"v":1,"leases":{}}'), { leases: [], problems: [/expected/] });
  const good = { id: "a", source: "127.0.0.1", protocol: "modbus", openedAt: 1, principal: principal("x", 2) };
  const bad = [{ ...good, id: 1 }, { ...good, principal: { ...good.principal, roles: "historian" } }, { ...good, principal: { ...good.principal, via: "root" } }, { ...good, principal: { ...good.principal, expiresAt: "soon" } }, null];
  const r = await load(JSON.stringify({ v: 1, leases: [good, ...bad] }));
  t.same(r.leases.map((l) => l.id), ["a"]);
  t.equal(r.problems.length, bad.length, "one problem per entry left out");
  t.match(r.problems[0], /leases\[1\] is not a lease/);
  t.match(await new LeaseStore(join(dir, "sub"), () => undefined).load(), { leases: [], problems: [/cannot be read/] }, "a directory where the file should be");
});

t.test("a write that fails is reported, naming the file", async (t) => {
  const dir = t.testdir({ "not-a-dir": "a file" });
  const errors: Error[] = [];
  const store = new LeaseStore(join(dir, "not-a-dir", "leases.json"), (e) => errors.push(e));
  store.save(() => []);
  await store.saved();
  t.equal(errors.length, 1);
  t.match(errors[0]?.message, /not-a-dir\/leases\.json cannot be written: /);
  t.equal(readFileSync(join(dir, "not-a-dir"), "utf8"), "a file", "nothing else touched");
});
