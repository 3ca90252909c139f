// node-opcua's messages in the gateway's log (src/util/opcua-logging.ts): the loggers on their
// own, and `ztgate start` as a user runs it, whose stdout must hold only pino's JSON lines and
// the printed guide, however node-opcua feels about the Node version or the certificates.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import t from "tap";
import { opcuaLoggers, opcuaText } from "../../src/util/opcua-logging.js";
import { childEnv } from "../support/child-env.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "ztgate.js");

type Line = Record<string, unknown> & { level: number; msg: string };

// The last test starts `ztgate start` (tsx, keys, two simulated servers, the OPC UA front): a
// busy machine needs more than the default per-file timeout for it.
t.setTimeout(240_000);

function capture(level = "debug") {
  const lines: Line[] = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  return { lines, loggers: opcuaLoggers(log) };
}

t.test("warnings at warn, known-harmless ones at debug, errors at error; tagged with where they come from", async (t) => {
  const { lines, loggers } = capture();
  // As node-opcua calls them: a context, then console.log-style arguments.
  loggers.warning({ filename: "verify_pcks1", callerline: 69 }, "[NODE-OPCUA-W27]", "node version", "v20.20.2");
  loggers.warning({ filename: "verify_pcks1", callerline: 70 }, "  you need to use node flag --security-revert=CVE-2023-46809 if you have issue with RSA PKCS#1 v1.5");
  loggers.warning({ filename: "base_server", callerline: 378 }, "[NODE-OPCUA-W26] Certificate SAN is missing the following configured hostnames/IPs: %s.", "plant-gw");
  loggers.warning({ filename: "client_base_impl", callerline: 672 }, "Creating default certificate ... please wait");
  loggers.error({ filename: "server_engine", callerline: 12 }, "\u001b[31mcannot bind\u001b[39m", { port: 4840 });
  loggers.debug({ filename: "client_session_impl", callerline: 5 }, "detail", 42);
  t.match(lines, [
    { level: 20, source: "node-opcua", module: "verify_pcks1", line: 69, code: "NODE-OPCUA-W27", harmless: String, msg: "[NODE-OPCUA-W27] node version v20.20.2" },
    { level: 20, module: "verify_pcks1", harmless: String, msg: /^you need to use node flag --security-revert=CVE-2023-46809/ },
    { level: 40, module: "base_server", code: "NODE-OPCUA-W26", msg: "[NODE-OPCUA-W26] Certificate SAN is missing the following configured hostnames/IPs: plant-gw." },
    { level: 20, module: "client_base_impl", harmless: String },
    { level: 50, module: "server_engine", msg: "cannot bind { port: 4840 }" },
    { level: 20, module: "client_session_impl", msg: "detail 42" },
  ]);
  t.notOk("harmless" in (lines[2] as Line), "a warning that matters is not marked harmless");
  t.notOk("code" in (lines[4] as Line), "no tag, no code");
});

t.test("at info, the harmless warnings are not shown; the others are", async (t) => {
  const { lines, loggers } = capture("info");
  loggers.warning({ filename: "verify_pcks1", callerline: 69 }, "[NODE-OPCUA-W27]", "node version", "v20.20.2");
  loggers.warning({ filename: "base_server", callerline: 378 }, "[NODE-OPCUA-W26] SAN");
  t.same(lines.map((l) => l.msg), ["[NODE-OPCUA-W26] SAN"]);
});

t.test("a missing or odd context is tolerated", async (t) => {
  const { lines, loggers } = capture();
  loggers.warning(undefined, "no context");
  loggers.warning("not an object", "odd context");
  loggers.error({ filename: 3, callerline: "x" }, "wrong types");
  t.equal(lines.length, 3);
  for (const l of lines) {
    t.notOk("module" in l);
    t.notOk("line" in l);
  }
  t.same(lines.map((l) => l.level), [40, 40, 50]);
});

t.test("a flood from one source line is cut after 100 messages, with one line saying so", async (t) => {
  const { lines, loggers } = capture();
  for (let i = 0; i < 250; i++) loggers.warning({ filename: "tcp_transport", callerline: 9 }, `socket error ${i}`);
  loggers.warning({ filename: "tcp_transport", callerline: 10 }, "another line");
  t.equal(lines.length, 102);
  t.match(lines[100], { level: 40, module: "tcp_transport", line: 9, msg: /more than 100 messages from this source line/ });
  t.match(lines[101], { msg: "another line" }, "other source lines are counted apart");
});

t.test("message text: formatted, colours stripped, bounded", async (t) => {
  t.equal(opcuaText(["a %s b", "x", 1]), "a x b 1");
  t.equal(opcuaText(["\u001b[1m\u001b[33mbold\u001b[39m\u001b[22m"]), "bold");
  const long = opcuaText(["y".repeat(5000)]);
  t.ok(long.startsWith("y".repeat(4000) + "…"));
  t.match(long, /\(1000 more characters\)$/);
});

t.test("`ztgate start`: stdout holds only JSON log lines and the printed guide", async (t) => {
  const dir = t.testdir({
    "gateway.yaml": [
      "policy: { dir: policies, watch: false }",
      "modbus:",
      "  listeners: [{ name: lease, mode: lease, port: 0 }]",
      // OPC UA front and simulated OPC UA server on: node-opcua is loaded and serves.
      "opcua: { front: { port: 0 } }",
      "sim: { modbus: { port: 0 }, opcua: { port: 0 } }",
      "http: { port: 0, tls: false }",
      "",
    ].join("\n"),
    policies: {
      "boiler-plc.yaml": readFileSync(join(ROOT, "policies", "boiler-plc.yaml"), "utf8"),
      "packaging-line.yaml": readFileSync(join(ROOT, "policies", "packaging-line.yaml"), "utf8"),
    },
  });
  const child = spawn(process.execPath, [BIN, "start", "--config", join(dir, "gateway.yaml")], { cwd: ROOT, env: childEnv({ ZTGATE_LOG_LEVEL: "debug" }), stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const json = () =>
    stdout.split("\n").flatMap((l) => {
      try {
        return l.startsWith("{") ? [JSON.parse(l) as Line] : [];
      } catch {
        return [];
      }
    });
  // W27 (PKCS#1 v1.5 under CVE-2023-46809) is what node-opcua prints on Node 20 and 21, a while
  // after it loads: wait for it to come through as a log line. Node 22 and later never print it.
  const w27 = Number(process.versions.node.split(".")[0]) < 22;
  const guided = () => /^ztgate is running with /m.test(stdout + stderr) && /^\s*Stop with Ctrl-C/m.test(stdout + stderr);
  const ready = () => guided() && json().some((l) => l.msg === "OPC UA front listening") && (!w27 || json().some((l) => l["code"] === "NODE-OPCUA-W27"));
  const end = Date.now() + 60_000;
  while (!ready()) {
    if (child.exitCode !== null || Date.now() > end) {
      t.fail(`not ready (exit ${child.exitCode})\nstdout:\n${stdout}\nstderr:\n${stderr}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGTERM");
  t.equal(await closed, 0, "stops cleanly");

  // The guide for people (on stderr, or stdout if it ever moves there) is one block; besides it,
  // stdout holds pino lines only and stderr nothing.
  const guide: string[] = [];
  const rest = (text: string) => {
    const lines = text.split("\n");
    t.equal(lines.pop(), "", "ends with a newline");
    const first = lines.findIndex((l) => l.startsWith("ztgate is running with "));
    if (first < 0) return lines;
    const last = lines.findIndex((l, i) => i > first && /^\s*Stop with Ctrl-C/.test(l));
    t.ok(last > first, "the guide ends where it says how to stop");
    guide.push(...lines.slice(first, last + 1));
    return [...lines.slice(0, first), ...lines.slice(last + 1)];
  };
  const out = stdout === "" ? [] : rest(stdout);
  const err = stderr === "" ? [] : rest(stderr);
  t.ok(guide.length > 1, "the guide is printed");
  const notJson = out.filter((l) => {
    try {
      return (JSON.parse(l) as Line).name !== "ztgate";
    } catch {
      return true;
    }
  });
  t.same(notJson, [], "every stdout line (the guide aside) is a pino JSON line");
  t.same(err, [], "nothing on stderr but the guide");
  const opcua = json().filter((l) => l["source"] === "node-opcua");
  t.ok(opcua.length > 0, "node-opcua's messages are in the log");
  if (w27) t.match(opcua.find((l) => l["code"] === "NODE-OPCUA-W27"), { level: 20, module: "verify_pcks1" }, "W27 at debug");
  t.notOk(/NODE-OPCUA-W\d+\]|verify_pcks1|Creating default certificate/.test([...guide, ...err].join("\n")), "no raw node-opcua text");
});
