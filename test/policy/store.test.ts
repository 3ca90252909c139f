import t from "tap";
import { once } from "node:events";
import { cp, writeFile, readFile, rm, symlink } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PolicyStore } from "../../src/policy/store.js";
import type { ReloadResult } from "../../src/policy/store.js";
import { ZtError } from "../../src/errors.js";
import { decide } from "../../src/pdp/evaluate.js";

const repoPolicies = fileURLToPath(new URL("../../policies", import.meta.url));
const mes = { sub: "mes-1", iss: "t", roles: ["mes"], claims: {}, via: "explain" as const };
const writeSetpoint = (value: number) => ({ asset: "boiler-plc", action: "write" as const, target: { kind: "point" as const, point: "setpoint" }, value });

async function copyPolicies(t: { testdir(): string }): Promise<string> {
  const dir = t.testdir();
  await cp(repoPolicies, dir, { recursive: true });
  return dir;
}

t.test("a rejected reload leaves the old revision in force and says why", async (t) => {
  const dir = await copyPolicies(t);
  const store = await PolicyStore.open(dir, { now: () => new Date("2026-11-25T10:00:00Z") });
  t.teardown(() => store.close());
  const before = store.current();
  const rejected: ReloadResult[] = [];
  store.on("rejected", (r) => rejected.push(r));

  const file = path.join(dir, "boiler-plc.yaml");
  const good = await readFile(file, "utf8");
  await writeFile(file, good.replace("values: { min: 20, max: 80 }", "values: { min: 90, max: 80 }").replace("points: [burner_on]", "points: [burner]"));
  const r = await store.reload("api");
  t.equal(r.ok, false);
  t.equal(r.revision, before.revision, "revision stays");
  t.equal(store.current(), before, "the very same set stays in force");
  t.equal(r.errors.length, 2, "both errors are reported");
  t.match(r.errors.join("\n"), /boiler-plc\.yaml:\d+:\d+: rule "no-burner-from-it": unknown point "burner"/);
  t.match(r.errors.join("\n"), /values\.min 90 is greater than values\.max 80/);
  t.equal(rejected.length, 1);
  t.same(store.info().lastRejected, { at: "2026-11-25T10:00:00.000Z", trigger: "api", errors: r.errors });
  // The old policy still decides: mes may write 60.
  t.equal(decide(store.current(), writeSetpoint(60), mes, { now: 0 }).effect, "allow");

  await writeFile(file, good.replace("values: { min: 20, max: 80 }", "values: { min: 20, max: 70 }"));
  const ok = await store.reload("sighup");
  t.equal(ok.ok, true);
  t.equal(ok.changed, true);
  t.not(ok.revision, before.revision);
  t.equal(ok.previousRevision, before.revision);
  t.equal(decide(store.current(), writeSetpoint(75), mes, { now: 0 }).reason, "value-out-of-range");
  t.equal(decide(store.current(), writeSetpoint(75), mes, { now: 0 }).policyRevision, ok.revision);
});

t.test("a reload with no change keeps the revision and reports unchanged", async (t) => {
  const dir = await copyPolicies(t);
  const store = await PolicyStore.open(dir);
  const r = await store.reload("manual");
  t.same([r.ok, r.changed, r.revision], [true, false, store.current().revision]);
});

t.test("a file removed or made unreadable is a rejection, not an empty policy", async (t) => {
  const dir = await copyPolicies(t);
  const store = await PolicyStore.open(dir);
  const rev = store.current().revision;
  await rm(path.join(dir, "boiler-plc.yaml"));
  await rm(path.join(dir, "packaging-line.yaml"));
  const r = await store.reload("manual");
  t.equal(r.ok, false);
  t.match(r.errors[0], /no policy files/);
  t.equal(store.current().revision, rev);
});

t.test("open fails with every error when the initial policy is invalid", async (t) => {
  const dir = t.testdir({ "a.yaml": "asset: a\nprotocol: modbus\nendpoint: tcp://x\nrules: []\nbogus: 1\n", "b.yaml": "asset: b\n" });
  const e = await PolicyStore.open(dir).then(() => undefined, (err: unknown) => err);
  t.ok(e instanceof ZtError);
  const z = e as ZtError;
  t.equal(z.code, "ZT_POLICY_INVALID");
  t.ok(z.diagnostics.length >= 2);
  t.match(z.describe(), /a\.yaml:5:1: unknown key "bogus"/);
  t.match(z.describe(), /b\.yaml:1:1: missing required key "protocol"/);
});

t.test("a change on disk is picked up by the watcher; readers see old or new, never neither", async (t) => {
  const dir = await copyPolicies(t);
  const store = await PolicyStore.open(dir, { watch: true, debounceMs: 20 });
  t.teardown(() => store.close());
  const rev = store.current().revision;
  const seen = new Set<string>();
  const reader = setInterval(() => seen.add(store.current().revision), 1);
  t.teardown(() => clearInterval(reader));
  const file = path.join(dir, "packaging-line.yaml");
  const reloaded = once(store, "reloaded");
  await writeFile(file, (await readFile(file, "utf8")).replace("max: 120", "max: 100"));
  const [r] = (await reloaded) as [ReloadResult];
  t.equal(r.trigger, "watch");
  t.not(r.revision, rev);
  const rejected = once(store, "rejected");
  await writeFile(file, "asset: [not, valid\n");
  const [bad] = (await rejected) as [ReloadResult];
  t.match(bad.errors[0], /packaging-line\.yaml:\d+:\d+: YAML/);
  t.equal(store.current().revision, r.revision);
  clearInterval(reader);
  for (const s of seen) t.ok(s === rev || s === r.revision, `revision ${s} is one of the whole sets`);
});

t.test("policy files that are symbolic links (as a Kubernetes ConfigMap mounts them) are read; a link to no file is an error, not skipped", async (t) => {
  const dir = t.testdir({ data: { "boiler-plc.yaml": await readFile(path.join(repoPolicies, "boiler-plc.yaml"), "utf8") }, policies: {} });
  await symlink(path.join(dir, "data", "boiler-plc.yaml"), path.join(dir, "policies", "boiler-plc.yaml"));
  const store = await PolicyStore.open(path.join(dir, "policies"));
  t.teardown(() => store.close());
  t.ok(store.current().assets.get("boiler-plc"), "the linked file is loaded");
  await symlink(path.join(dir, "data"), path.join(dir, "policies", "more.yaml"));
  const r = await store.reload("manual");
  t.match(r, { ok: false, errors: [/more\.yaml.*not a regular file/] });
});
