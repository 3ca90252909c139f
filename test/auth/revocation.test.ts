// The revocation list on disk: what is revoked outlives a restart; a list that cannot be read
// stops the start (naming the file); a list that cannot be written says so and stays in force
// in memory; expired token revocations are dropped.
import t from "tap";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RevocationList } from "../../src/auth/revocation.js";

const T0 = Date.parse("2026-03-02T10:00:00Z");

t.test("revocations outlive a restart", async (t) => {
  const file = join(t.testdir({}), "revocations.json");
  let now = T0;
  const a = await RevocationList.open(file, { now: () => now });
  t.equal(a.size, 0, "no file: nothing revoked");
  await a.saved();
  a.revokeJti("jti-1", T0 + 3_600_000);
  a.revokeSub("mallory");
  await a.saved();
  t.match(JSON.parse(readFileSync(file, "utf8")), { v: 1, jtis: { "jti-1": T0 + 3_600_000 + 300_000 }, subs: { mallory: T0 } });

  now = T0 + 60_000;
  const b = await RevocationList.open(file, { now: () => now });
  t.equal(b.size, 2);
  t.match(b.check({ jti: "jti-1", sub: "alice" }), /token jti-1 was revoked/, "the token stays revoked after a restart");
  t.match(b.check({ sub: "mallory", iat: T0 / 1000 - 10 }), /tokens of mallory issued before/, "and the subject's tokens issued before");
  t.equal(b.check({ sub: "mallory", iat: T0 / 1000 + 10 }), undefined, "a token issued after the revocation is accepted");
  t.equal(b.check({ jti: "jti-2", sub: "alice" }), undefined);

  // Past the token's expiry (plus the grace) its revocation is dropped, on open and on save.
  now = T0 + 3_600_000 + 300_001;
  const c = await RevocationList.open(file, { now: () => now });
  t.equal(c.size, 1, "the expired token's revocation is dropped; the subject's stays");
  c.revokeJti("jti-3");
  await c.saved();
  t.same(Object.keys(JSON.parse(readFileSync(file, "utf8")).jtis as object), ["jti-3"]);

  // A token revoked with its expiry unknown (no session rested on it) stays revoked for good:
  // a week-long token revoked before its first use is still refused a year on, and after a restart.
  now = T0 + 365 * 86_400_000;
  t.match(c.check({ jti: "jti-3", sub: "alice" }), /token jti-3 was revoked/, "a year on");
  const d = await RevocationList.open(file, { now: () => now });
  t.match(d.check({ jti: "jti-3", sub: "alice" }), /token jti-3 was revoked/, "and after a restart");
});

t.test("a list that cannot be read or parsed stops the start, naming the file and what is wrong", async (t) => {
  const dir = t.testdir({
    "garbage.json": "{not json",
    "array.json": "[]",
    "v2.json": JSON.stringify({ v: 2, jtis: {}, subs: {} }),
    "bad-time.json": JSON.stringify({ v: 1, jtis: { "jti-1": "tomorrow" }, subs: {} }),
    "no-subs.json": JSON.stringify({ v: 1, jtis: {} }),
  });
  const cases: Array<[string, RegExp]> = [
    ["garbage.json", /garbage\.json is not valid: .*JSON/],
    ["array.json", /array\.json is not valid: expected an object with "v": 1/],
    ["v2.json", /v2\.json is not valid: expected an object with "v": 1/],
    ["bad-time.json", /bad-time\.json is not valid: "jtis"\."jti-1" must be a time in epoch ms, not "tomorrow"/],
    ["no-subs.json", /no-subs\.json is not valid: "subs" must be an object/],
  ];
  for (const [file, message] of cases) await t.rejects(RevocationList.open(join(dir, file)), { code: "ZT_REVOCATIONS_INVALID", message }, file);
  await t.rejects(RevocationList.open(dir), { code: "ZT_REVOCATIONS_INVALID", message: /cannot be read/ }, "a directory");
});

t.test("a list that cannot be written: saved() says so, the revocation is in force all the same", async (t) => {
  // Its directory is gone (root ignores permissions, so a missing directory it is).
  const file = join(t.testdir({}), "gone", "revocations.json");
  const list = await RevocationList.open(file);
  list.revokeSub("mallory");
  t.match(list.check({ sub: "mallory" }), /revoked/, "in force at once");
  await t.rejects(list.saved(), { code: "ZT_REVOCATIONS_INVALID", message: /gone\/revocations\.json cannot be written: .*in force until the gateway stops/ });
  t.match(list.check({ sub: "mallory" }), /revoked/, "and still in force");
  mkdirSync(join(file, ".."));
  list.revokeJti("jti-9");
  await list.saved();
  t.match(JSON.parse(readFileSync(file, "utf8")), { subs: { mallory: Number }, jtis: { "jti-9": Number } }, "the next write carries everything, the earlier one too");
});
