// bin/ztgate.js as a user runs it: a real process, real exit codes, real signals.
import { spawn } from "node:child_process";
import { childEnv } from "../support/child-env.js";
import type { ChildProcess } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import type { Test } from "tap";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "ztgate.js");
const BOILER = readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8");
const PACKAGING = readFileSync(join(ROOT, "policies", "packaging-line.yaml"), "utf8");

/** How long a started process may take to say something (tsx compiles on first load). */
const WAIT_MS = 90_000; // a whole gateway starting on a busy 2-core CI machine (first start: RSA keys)

type LogLine = Record<string, unknown> & { msg?: string };

/** One run of `node bin/ztgate.js …` with cwd = the repository root. */
class Ztgate {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  /** Exit code and signal, once the process has exited and its output is all read. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private wakers = new Set<() => void>();

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: childEnv({ ZTGATE_LOG_LEVEL: "info" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
      this.wake();
    });
    this.child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
      this.wake();
    });
    this.closed = new Promise((resolve) => this.child.on("close", (code, signal) => resolve({ code, signal })));
  }

  private wake(): void {
    for (const w of this.wakers) w();
  }

  /** The pino JSON lines written to stdout so far. */
  logs(): LogLine[] {
    return this.stdout.split("\n").flatMap((l) => {
      if (!l.startsWith("{")) return [];
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
  }

  /** Resolves once `ok()` holds (checked on every bit of output); rejects on exit or timeout. */
  waitFor<T>(what: string, ok: () => T | undefined | null | false, ms = WAIT_MS): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.wakers.delete(check);
        f();
      };
      const check = () => {
        const v = ok();
        if (v !== undefined && v !== null && v !== false) done(() => resolve(v));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out waiting for ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`))), ms);
      this.wakers.add(check);
      void this.closed.then(() => {
        check();
        if (this.wakers.has(check)) done(() => reject(new Error(`exited while waiting for ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`)));
      });
      check();
    });
  }

  /** The first log line after the first `after` ones that `ok` accepts. */
  waitForLog(what: string, ok: (l: LogLine) => boolean, after = 0): Promise<LogLine> {
    return this.waitFor(what, () => this.logs().slice(after).find(ok));
  }

  /** The exit, which must come within `ms`. */
  async exit(ms = WAIT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`)), ms);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Runs ztgate to completion. */
async function ztgate(...args: string[]) {
  const z = new Ztgate(args);
  const { code, signal } = await z.exit();
  return { code, signal, stdout: z.stdout, stderr: z.stderr };
}

/** Starts ztgate; the test's teardown kills it if the test did not stop it. */
function started(t: Test, ...args: string[]): Ztgate {
  const z = new Ztgate(args);
  t.teardown(() => {
    if (z.child.exitCode === null && z.child.signalCode === null) z.child.kill("SIGKILL");
  });
  return z;
}

/** A config in a fresh directory whose policy.dir is a copy of the repository's policies. */
function gatewayDir(t: Test, watch: boolean): { config: string; boiler: string } {
  const dir = t.testdir({
    "gateway.yaml": [
      "policy:", "  dir: policies", `  watch: ${watch}`, "  debounceMs: 50",
      // Free ports: these tests must not need (nor take) the default ones.
      "modbus:", "  listeners:", "    - { name: lease, mode: lease, port: 0 }", "    - { name: mtls, mode: mtls, port: 0 }",
      "opcua:", "  front: { enabled: false }", "sim:", "  modbus: { port: 0 }", "  opcua: { enabled: false }", "http:", "  port: 0", "",
    ].join("\n"),
    policies: { "boiler-plc.yaml": BOILER, "packaging-line.yaml": PACKAGING },
  });
  return { config: join(dir, "gateway.yaml"), boiler: join(dir, "policies", "boiler-plc.yaml") };
}

/** Saves a file the way editors do (write a temporary file, rename it over the old one). */
function save(file: string, text: string): void {
  writeFileSync(`${file}.swp`, text);
  renameSync(`${file}.swp`, file);
}

const BROKEN = BOILER.replace(/allow: \[write\]/, "allow: [wirte]");
const CHANGED = BOILER.replace("values: { min: 20, max: 80 }", "values: { min: 20, max: 75 }");
const BROKEN_ERROR = /boiler-plc\.yaml:\d+:13: rules\[3\]\.allow\[0\]: must be an action/;

// Each process spends a few seconds starting (tsx, and coverage of child processes under
// tap); on a busy machine this file needs more than the default per-file timeout.
t.setTimeout(300_000);

t.test("the edits the tests make are real edits", async (t) => {
  t.not(BROKEN, BOILER);
  t.not(CHANGED, BOILER);
});

t.test("policy check policies exits 0 with one ok line", async (t) => {
  const r = await ztgate("policy", "check", "policies");
  t.equal(r.code, 0);
  t.equal(r.stderr, "");
  t.match(r.stdout, /^ok: 2 policy files, boiler-plc .*; revision [0-9a-f]+\n$/);
});

t.test("policy explain exits 0 on allow and 1 on deny", async (t) => {
  const allow = await ztgate("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "temperature", "--sub", "hist-1", "--role", "historian");
  t.equal(allow.code, 0);
  t.match(allow.stdout, /^ALLOW {2}reason: allowed {2}rule: historian-read /);
  t.equal(allow.stderr, "");
  const deny = await ztgate("policy", "explain", "--asset", "boiler-plc", "--action", "write", "--point", "burner_on", "--value", "true", "--sub", "mes-1", "--role", "mes", "--json");
  t.equal(deny.code, 1);
  t.match(JSON.parse(deny.stdout), { effect: "deny", rule: "no-burner-from-it", reason: "denied-by-rule" });
  t.equal(deny.stderr, "");
});

t.test("a usage error exits 2 with exactly one line on stderr", async (t) => {
  const r = await ztgate("policy", "explain", "--asset", "boiler-plc", "--action", "read", "--point", "pressure", "--target", "input:2", "--sub", "s");
  t.equal(r.code, 2);
  t.equal(r.stdout, "");
  t.match(r.stderr, /^ztgate: give exactly one of --point or --target; usage: [^\n]*\n$/);
});

t.test("start runs until SIGTERM, then exits 0", async (t) => {
  const { config } = gatewayDir(t, true);
  const z = started(t, "start", "--config", config);
  const running = await z.waitFor("the running banner", () => /ztgate is running with .*gateway\.yaml\n {2}policy: 2 assets \(boiler-plc, packaging-line\), revision ([0-9a-f]+), from /.exec(z.stderr));
  const loaded = await z.waitForLog("policy loaded", (l) => l.msg === "policy loaded");
  t.equal(loaded["revision"], running[1], "the banner and the log agree on the revision");
  t.same(loaded["assets"], ["boiler-plc", "packaging-line"]);
  // The one fixed wait here: that it keeps running with nothing to do (not falling off the
  // event loop once started) needs some time to pass.
  const early = await Promise.race([z.closed.then(() => "exited"), new Promise<string>((r) => setTimeout(() => r("running"), 1500))]);
  t.equal(early, "running", "still running after it said so");
  z.child.kill("SIGTERM");
  const { code, signal } = await z.exit(10_000);
  t.equal(code, 0);
  t.equal(signal, null);
  t.ok(z.logs().some((l) => l.msg === "stopped"), "it logs that it stopped");
  t.match(z.stderr, /^ztgate is running with[\s\S]*Stop with Ctrl-C\.[^\n]*\n$/);
});

t.test("start with an invalid config exits 1 with positioned errors", async (t) => {
  const dir = t.testdir({ "gateway.yaml": "policy:\n  watch: maybe\n  colour: red\n" });
  const file = join(dir, "gateway.yaml");
  const r = await ztgate("start", "--config", file);
  t.equal(r.code, 1);
  t.equal(r.stdout, "");
  t.same(r.stderr.split("\n"), [
    `ztgate: ZT_CONFIG_INVALID: ${file}: 2 errors`,
    `${file}:2:10: policy.watch: must be boolean`,
    `${file}:3:3: unknown key "colour" in policy`,
    "",
  ]);
});

t.test("a policy edit that does not validate is rejected; a good one is applied (watch)", async (t) => {
  const { config, boiler } = gatewayDir(t, true);
  const z = started(t, "start", "--config", config);
  const loaded = await z.waitForLog("policy loaded", (l) => l.msg === "policy loaded");
  await z.waitFor("the running banner", () => z.stderr.includes("Stop with Ctrl-C."));

  let seen = z.logs().length;
  save(boiler, BROKEN);
  const rejected = await z.waitForLog("the rejection", (l) => /rejected/.test(l.msg ?? ""), seen);
  t.match(rejected, { level: 40, trigger: "watch", revision: loaded["revision"] }, "the previous revision stays in force");
  t.match(rejected["errors"], [BROKEN_ERROR]);

  seen = z.logs().length;
  save(boiler, CHANGED);
  const reloaded = await z.waitForLog("the reload", (l) => l.msg === "policy reloaded", seen);
  t.match(reloaded, { trigger: "watch", previousRevision: loaded["revision"] });
  t.not(reloaded["revision"], loaded["revision"]);

  z.child.kill("SIGTERM");
  t.equal((await z.exit(10_000)).code, 0);
});

t.test("SIGHUP reloads: a bad change is rejected, a fixed one applied", async (t) => {
  const { config, boiler } = gatewayDir(t, false);
  const z = started(t, "start", "--config", config);
  const loaded = await z.waitForLog("policy loaded", (l) => l.msg === "policy loaded");
  await z.waitFor("the running banner", () => z.stderr.includes("Stop with Ctrl-C."));

  let seen = z.logs().length;
  save(boiler, BROKEN);
  z.child.kill("SIGHUP");
  const rejected = await z.waitForLog("the rejection", (l) => /rejected/.test(l.msg ?? ""), seen);
  t.match(rejected, { trigger: "sighup", revision: loaded["revision"] });
  t.match(rejected["errors"], [BROKEN_ERROR]);

  seen = z.logs().length;
  save(boiler, CHANGED);
  z.child.kill("SIGHUP");
  const reloaded = await z.waitForLog("the reload", (l) => l.msg === "policy reloaded", seen);
  t.match(reloaded, { trigger: "sighup", previousRevision: loaded["revision"] });
  t.not(reloaded["revision"], loaded["revision"]);
  t.notOk(z.logs().some((l) => l.msg === "policy reloaded" && l["trigger"] === "watch"), "watch: false does not watch");

  z.child.kill("SIGINT");
  t.equal((await z.exit(10_000)).code, 0, "SIGINT stops it cleanly too");
  t.match(z.stderr, /^ztgate is running with[\s\S]*Stop with Ctrl-C\.[^\n]*\n$/);
});
