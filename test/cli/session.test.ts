// `ztgate session list | revoke | keep` as a user runs them: bin/ztgate.js in a child process
// against a whole gateway (startGateway, HTTPS with the dev CA) on free ports of 127.0.0.1,
// with real tokens from the dev issuer key. Usage errors run in-process through main().
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { createCa } from "../../src/auth/certs.js";
import { main } from "../../src/cli/index.js";
import { childEnv } from "../support/child-env.js";
import { startHarness } from "../fronts/harness.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "ztgate.js");
/** How long a child may take to say something (tsx compiles on first load; the box is shared). */
const WAIT_MS = 60_000;

// Each child run compiles the CLI through tsx first; on a busy machine this file needs more
// than the default per-file timeout.
t.setTimeout(300_000);

const h = await startHarness(t);
const http = h.gw.http as { address: { host: string; port: number } };
const URL_ = `https://127.0.0.1:${http.address.port}`;
const CA = join(h.keysDir, "ca.pem");
const at = [`--url`, URL_, `--ca`, CA];
const admin = await h.token("root", ["admin"]);

/** One run of `node bin/ztgate.js …` to its end. */
function ztgate(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

/** One run in this process, through main(): the same code, without a child's start-up. */
async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(...l.split("\n")), err: (l) => err.push(...l.split("\n")) });
  return { code, out, err };
}

/** A long-running `ztgate session keep`, whose stderr lines can be waited for. */
class Keep {
  readonly child: ChildProcess;
  err = "";
  readonly closed: Promise<number | null>;
  private wakers = new Set<() => void>();

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [BIN, "session", "keep", ...args], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "ignore", "pipe"] });
    this.child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.err += d;
      for (const w of this.wakers) w();
    });
    this.closed = new Promise((resolve) => this.child.on("close", (code) => resolve(code)));
  }

  lines(): string[] {
    return this.err.split("\n").filter((l) => l !== "");
  }

  /** The `n`th (1-based) stderr line matching `re`. */
  async line(re: RegExp, n = 1): Promise<RegExpMatchArray> {
    const found = () => this.lines().map((l) => re.exec(l)).filter((m) => m !== null)[n - 1];
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = found();
        if (m) {
          clearTimeout(timer);
          this.wakers.delete(check);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        this.wakers.delete(check);
        reject(new Error(`keep never printed ${re} (#${n}); stderr so far:\n${this.err}`));
      }, WAIT_MS);
      this.wakers.add(check);
      void this.closed.then(() => {
        if (!found()) {
          clearTimeout(timer);
          this.wakers.delete(check);
          reject(new Error(`keep exited before printing ${re}; stderr:\n${this.err}`));
        }
      });
      check();
    });
  }
}

/** Writes `text` to `file` the way identity agents do: a temporary file renamed over it. */
function replaceAtomically(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** A port on 127.0.0.1 that nothing listens on (taken from the OS, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test("session list: a table of everyone's sessions for an admin, one's own otherwise, or JSON", async (t) => {
  const lease = await h.leaseFor("list-hist", ["historian"]);
  const other = h.gw.sessions.open({ sub: "list-mes", iss: "ztgate-dev", roles: ["mes", "historian"], claims: {}, via: "bearer", expiresAt: Date.parse("2030-01-01T00:00:00Z") }, { kind: "lease", protocol: "modbus", source: "10.20.0.7" });
  const tls = h.gw.sessions.open({ sub: "list-cert", iss: "ztgate-dev", roles: [], claims: {}, via: "mtls" }, { kind: "session", protocol: "modbus", source: "127.0.0.1" });
  t.teardown(() => {
    h.gw.sessions.revokeById(other.id);
    h.gw.sessions.revokeById(tls.id);
  });

  const r = await ztgate(["session", "list", ...at, "--token", admin]);
  t.equal(r.code, 0, r.err);
  t.equal(r.err, "");
  const lines = r.out.trimEnd().split("\n");
  t.match(lines[0], /^ID +KIND\/VIA +SUB +ROLES +SOURCE +EXPIRES$/);
  t.ok(lines.some((l) => new RegExp(`^${lease.id} +lease +list-hist +historian +127\\.0\\.0\\.1 +\\d{4}-\\d\\d-\\d\\dT`).test(l)), "the lease");
  t.ok(lines.some((l) => new RegExp(`^${other.id} +lease +list-mes +mes,historian +10\\.20\\.0\\.7 +2030-01-01T00:00:00\\.000Z$`).test(l)), "another subject's lease");
  t.ok(lines.some((l) => new RegExp(`^${tls.id} +session/mtls +list-cert +- +127\\.0\\.0\\.1 +-$`).test(l)), "a session with no roles and no expiry");

  const own = await ztgate(["session", "list", ...at, "--json"], { ZTGATE_TOKEN: lease.token });
  t.equal(own.code, 0, own.err);
  const json = JSON.parse(own.out) as Array<Record<string, unknown>>;
  t.match(json, [{ id: lease.id, kind: "lease", sub: "list-hist", roles: ["historian"], jti: /^[0-9a-f-]{36}$/, via: "lease", source: "127.0.0.1", expiresAt: /T/ }]);
  t.equal(json.length, 1, "a non-admin sees only its own");

  // Where the API is, read from a gateway.yaml: http.host/port/tls and keys.dir (its ca.pem).
  const cfg = join(h.dir, "cli.yaml");
  writeFileSync(cfg, `keys: { dir: ${JSON.stringify(h.keysDir)} }\nhttp: { host: 127.0.0.1, port: ${http.address.port} }\n`);
  const file = join(h.dir, "admin.jwt");
  writeFileSync(file, `${admin}\n`);
  const viaConfig = await ztgate(["session", "list", "--config", cfg, "--token-file", file, "--sub", "list-mes", "--json"]);
  t.equal(viaConfig.code, 0, viaConfig.err);
  t.match(JSON.parse(viaConfig.out), [{ id: other.id, sub: "list-mes" }]);
});

t.test("session revoke --id / --sub / --jti: the sessions end and revoked tokens are refused", async (t) => {
  const byId = await h.leaseFor("rev-id", ["historian"]);
  const r1 = await ztgate(["session", "revoke", ...at, "--token", admin, "--id", byId.id]);
  t.equal(r1.code, 0, r1.err);
  t.equal(r1.out, `ended session ${byId.id}\n`);
  t.equal(h.gw.sessions.get(byId.id), undefined, "the lease is gone");

  const subTok = await h.token("rev-sub", ["mes"]);
  const s1 = h.gw.sessions.open({ sub: "rev-sub", iss: "ztgate-dev", roles: ["mes"], claims: {}, via: "bearer" }, { kind: "lease", protocol: "modbus", source: "10.1.1.1" });
  const s2 = h.gw.sessions.open({ sub: "rev-sub", iss: "ztgate-dev", roles: ["mes"], claims: {}, via: "mtls" }, { kind: "session", protocol: "modbus", source: "10.1.1.2" });
  const r2 = await ztgate(["session", "revoke", ...at, "--token", admin, "--sub", "rev-sub"]);
  t.equal(r2.code, 0, r2.err);
  t.equal(r2.out, `revoked the tokens of rev-sub issued so far; ended 2 sessions: ${s1.id}, ${s2.id}\n`);
  t.same(h.gw.sessions.list({ sub: "rev-sub" }), []);
  t.match((await h.api("GET", "/v1/sessions", { token: subTok })).body, { status: 401, reason: "token-revoked" }, "rev-sub's token is refused now");

  const jtiTok = await h.token("rev-jti", ["historian"], { jti: "jti-under-test" });
  const r = await h.api("POST", "/v1/sessions", { token: jtiTok, body: { protocol: "modbus" } });
  const jtiLease = (r.body as { id: string }).id;
  const r3 = await ztgate(["session", "revoke", ...at, "--token", admin, "--jti", "jti-under-test"]);
  t.equal(r3.code, 0, r3.err);
  t.equal(r3.out, `revoked token jti-under-test; ended 1 session: ${jtiLease}\n`);
  t.equal(h.gw.sessions.get(jtiLease), undefined);
  t.equal((await h.api("GET", "/v1/sessions", { token: jtiTok })).status, 401);

  const revoked = (await h.records()).flatMap((x) => {
    const r = x as unknown as { type: string; event?: string; session?: string };
    return r.type === "session" && r.event === "revoked" ? [r.session] : [];
  });
  for (const id of [byId.id, s1.id, s2.id, jtiLease]) t.ok(revoked.includes(id), `the end of ${id} is in the decision log`);
});

t.test("refusals and failures: one clear line, exit 1", async (t) => {
  const lease = await h.leaseFor("not-admin", ["historian"]);
  const r = await ztgate(["session", "revoke", ...at, "--token", lease.token, "--sub", "someone"]);
  t.equal(r.code, 1);
  t.equal(r.out, "");
  t.match(
    r.err,
    /^ztgate: ZT_API_REFUSED: POST \/v1\/sessions\/revoke: 403 Not allowed: revoking the tokens and sessions of subject someone needs one of the roles admin \(gateway\.adminRoles\) \(reason no-matching-rule, decision [0-9a-f-]+\)\n$/,
  );
  const other = h.gw.sessions.open({ sub: "victim", iss: "ztgate-dev", roles: [], claims: {}, via: "bearer" }, { kind: "lease", protocol: "modbus", source: "10.3.3.3" });
  const byId = await ztgate(["session", "revoke", ...at, "--token", lease.token, "--id", other.id]);
  t.equal(byId.code, 1);
  t.match(byId.err, new RegExp(`^ztgate: ZT_API_REFUSED: DELETE /v1/sessions/${other.id}: 403 Not allowed: ending another subject's session .*\\(reason no-matching-rule, decision `));
  t.not(h.gw.sessions.get(other.id), undefined, "still open");

  // The rest in-process (same code and sockets, no child start-up): stderr is one line each.
  const failing = async (argv: string[], message: RegExp) => {
    const r = await run(...argv);
    t.equal(r.code, 1, argv.join(" "));
    t.same(r.out, []);
    t.equal(r.err.length, 1, argv.join(" "));
    t.match(r.err[0], message, argv.join(" "));
  };
  await failing(["session", "revoke", ...at, "--token", admin, "--id", "no-such-session"], /^ztgate: ZT_API_REFUSED: DELETE \/v1\/sessions\/no-such-session: 404 Not found: no open session no-such-session$/);
  await failing(["session", "list", ...at, "--token", await h.token("late", [], { ttl: -120 })], /^ztgate: ZT_API_REFUSED: GET \/v1\/sessions: 401 The request carries no valid bearer token: .*\(reason token-expired\)$/);

  const port = await closedPort();
  await failing(["session", "list", "--url", `https://127.0.0.1:${port}`, "--ca", CA, "--token", admin], new RegExp(`^ztgate: ZT_API_UNREACHABLE: GET https://127\\.0\\.0\\.1:${port}/v1/sessions: ECONNREFUSED: .*is the gateway running\\?`));

  const otherCa = join(h.dir, "other-ca.pem");
  writeFileSync(otherCa, (await createCa()).cert.toString("pem"));
  await failing(["session", "list", "--url", URL_, "--ca", otherCa, "--token", admin], /^ztgate: ZT_API_UNREACHABLE: GET https:\/\/127\.0\.0\.1:\d+\/v1\/sessions: \S+: .*not signed by the CA given/);
  await failing(["session", "list", "--url", URL_, "--ca", join(h.dir, "nowhere.pem"), "--token", admin], /^ztgate: ZT_KEYS_INVALID: \S+nowhere\.pem: cannot read the CA certificate/);

  const empty = join(h.dir, "empty.jwt");
  writeFileSync(empty, "\n");
  await failing(["session", "list", ...at, "--token-file", empty], /^ztgate: ZT_TOKEN_UNREADABLE: --token-file \S+empty\.jwt: holds no token \(empty\)$/);
  await failing(["session", "keep", ...at, "--token-file", join(h.dir, "absent.jwt")], /^ztgate: ZT_TOKEN_UNREADABLE: --token-file \S+absent\.jwt: cannot read \(ENOENT\)$/);
});

t.test("session keep: renews the lease whenever the token file changes, survives refusals, exits 0 on SIGTERM", async (t) => {
  const file = join(h.dir, "agent", "token.jwt");
  mkdirSync(join(h.dir, "agent"));
  writeFileSync(file, await h.token("keeper", ["historian"], { ttl: 600 }));
  const keep = new Keep(["--token-file", file, ...at]);
  t.teardown(() => void keep.child.kill("SIGKILL"));

  const id = (await keep.line(/lease (\S+) opened \(sub keeper, source 127\.0\.0\.1\), expires \S+; renewing it whenever \S+token\.jwt changes$/))[1] as string;
  const first = h.gw.sessions.get(id);
  t.match(first?.principal, { sub: "keeper", via: "lease" });
  const e1 = first?.expiresAt as number;

  // An agent replaces the file atomically with a fresh token of the same subject.
  replaceAtomically(file, await h.token("keeper", ["historian"], { ttl: 3600 }));
  await keep.line(new RegExp(`lease ${id} renewed \\(sub keeper, source 127\\.0\\.0\\.1\\), expires `));
  const e2 = h.gw.sessions.get(id)?.expiresAt as number;
  t.ok(e2 > e1, "the lease now lasts as long as the new token");
  t.equal(h.gw.sessions.lookupLease("127.0.0.1")?.id, id, "the same lease");

  // A token of another subject: refused, reported, the lease untouched, keep goes on.
  replaceAtomically(file, await h.token("intruder", ["mes"], { ttl: 7200 }));
  await keep.line(new RegExp(`renewal of lease ${id} refused: 403 Not allowed: session ${id} belongs to keeper \\(ztgate-dev\\), not intruder .*; the lease keeps its token .*; waiting for the next change of \\S+token\\.jwt$`));
  t.equal(h.gw.sessions.get(id)?.expiresAt, e2);
  t.equal(h.gw.sessions.get(id)?.principal.sub, "keeper");

  // A file rewritten in place works as well.
  writeFileSync(file, await h.token("keeper", ["historian"], { ttl: 7200 }));
  await keep.line(new RegExp(`lease ${id} renewed `), 2);
  t.ok((h.gw.sessions.get(id)?.expiresAt as number) > e2);

  // The lease ends under it (revoked by an admin): the next token opens a new one.
  h.gw.sessions.revokeById(id, "root");
  replaceAtomically(file, await h.token("keeper", ["historian"], { ttl: 1800 }));
  await keep.line(new RegExp(`lease ${id} is gone .*; opening a new one$`));
  const next = (await keep.line(/lease (\S+) opened /, 2))[1] as string;
  t.not(next, id);
  t.equal(h.gw.sessions.lookupLease("127.0.0.1")?.id, next);

  keep.child.kill("SIGTERM");
  t.equal(await keep.closed, 0, "exit 0 on SIGTERM");
  t.match(keep.lines().at(-1), new RegExp(`stopped; lease ${next} stays open`));
  t.not(h.gw.sessions.get(next), undefined, "the lease is left in place");
  t.equal(keep.lines().filter((l) => !l.startsWith("ztgate session keep: ")).length, 0, "every line says who wrote it");
});

t.test("session keep --id takes over an open lease; a start it cannot make is fatal (exit 1)", async (t) => {
  const lease = await h.leaseFor("taker", ["historian"], { ttl: 300 });
  const file = join(h.dir, "taker.jwt");
  writeFileSync(file, await h.token("taker", ["historian"], { ttl: 3000 }));
  const keep = new Keep(["--token-file", file, "--id", lease.id, ...at]);
  t.teardown(() => void keep.child.kill("SIGKILL"));
  await keep.line(new RegExp(`lease ${lease.id} renewed \\(sub taker, `));
  t.ok((h.gw.sessions.get(lease.id)?.expiresAt as number) > Date.now() + 1000_000, "moved onto the file's token at once");
  keep.child.kill("SIGINT");
  t.equal(await keep.closed, 0, "exit 0 on SIGINT");

  writeFileSync(file, await h.token("someone-else", []));
  const refused = await ztgate(["session", "keep", "--token-file", file, "--id", lease.id, ...at]);
  t.equal(refused.code, 1);
  t.match(refused.err, new RegExp(`^ztgate: ZT_API_REFUSED: POST /v1/sessions/${lease.id}/renew: 403 Not allowed: session ${lease.id} belongs to taker`));
});

t.test("usage errors: exit 2, one line", async (t) => {
  const saved = process.env["ZTGATE_TOKEN"];
  delete process.env["ZTGATE_TOKEN"];
  t.teardown(() => {
    if (saved !== undefined) process.env["ZTGATE_TOKEN"] = saved;
  });
  for (const [argv, message] of [
    [["session"], /^ztgate: no session command given; usage: ztgate session \(list \| revoke \| keep\)/],
    [["session", "kill"], /^ztgate: unknown session command "kill"/],
    [["session", "list", "--bogus"], /^ztgate: Unknown option '--bogus'.*; usage: ztgate session list /],
    [["session", "list"], /^ztgate: no token: give --token T, --token-file F or set ZTGATE_TOKEN; usage: ztgate session list /],
    [["session", "list", "--token", "a", "--token-file", "b"], /^ztgate: give --token or --token-file, not both/],
    [["session", "list", "--token", "a", "--url", "ftp://x"], /^ztgate: --url "ftp:\/\/x": must be an https:\/\/ \(or http:\/\/\) URL$/],
    [["session", "list", "--token", "a", "--url", "nope"], /^ztgate: --url "nope": not a URL/],
    [["session", "revoke", "--token", "a"], /^ztgate: say what to revoke: --id ID, --sub S or --jti J; usage: ztgate session revoke /],
    [["session", "revoke", "--token", "a", "--sub", "x", "--jti", "y"], /^ztgate: give one of --sub, --jti, not several: /],
    [["session", "revoke", "--token", "a", "--id", ""], /^ztgate: --id must not be empty/],
    [["session", "revoke", "--id", "x", "extra"], /^ztgate: unexpected argument "extra"/],
    [["session", "keep"], /^ztgate: --token-file is required; usage: ztgate session keep --token-file F/],
    [["session", "keep", "--token", "a"], /^ztgate: Unknown option '--token'/],
  ] as const) {
    const r = await run(...argv);
    t.equal(r.code, 2, argv.join(" "));
    t.same(r.out, [], argv.join(" "));
    t.equal(r.err.length, 1, argv.join(" "));
    t.match(r.err[0], message, argv.join(" "));
  }
});

t.test("--help for each command", async (t) => {
  for (const [argv, first] of [
    [["session", "--help"], /^usage: ztgate session list [^]*\nusage: ztgate session revoke [^]*\nusage: ztgate session keep /],
    [["session", "list", "--help"], /^usage: ztgate session list [^]*--json[^]*ZTGATE_TOKEN/],
    [["session", "revoke", "-h"], /^usage: ztgate session revoke [^]*--jti J +revokes one token/],
    [["session", "keep", "--help"], /^usage: ztgate session keep --token-file F[^]*renamed?[^]*exit 0/],
  ] as const) {
    const r = await run(...argv);
    t.equal(r.code, 0, argv.join(" "));
    t.same(r.err, []);
    t.match(r.out.join("\n"), first, argv.join(" "));
  }
  t.match((await run("help")).out.join("\n"), /session keep --token-file F/);
});
