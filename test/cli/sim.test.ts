// `ztgate sim` as the plant service runs it: a real process on free ports, read over Modbus TCP
// and OPC UA by independent clients, stopped by a signal with exit 0 and its ports closed.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import type { Test } from "tap";
import { AttributeIds, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy } from "node-opcua";
import { childEnv } from "../support/child-env.js";
import { RawClient, frame } from "../sim/raw-client.js";
import { LINE_NODES } from "../../src/sim/opcua.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "ztgate.js");
const WAIT_MS = 90_000;

// A process start (tsx) and the sim's first certificate take a while on a busy machine.
t.setTimeout(300_000);

interface Run {
  readonly child: ChildProcess;
  out: string;
  err: string;
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(t: Test, args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const r: Run = { child, out: "", err: "", closed: new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal }))) };
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (r.out += d));
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (r.err += d));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return r;
}

async function waitFor<T>(r: Run, what: string, get: () => T | null | undefined): Promise<T> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = get();
    if (v !== null && v !== undefined) return v;
    if (r.child.exitCode !== null) throw new Error(`exited (${r.child.exitCode}) while waiting for ${what}\nstdout:\n${r.out}\nstderr:\n${r.err}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nstdout:\n${r.out}\nstderr:\n${r.err}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(true));
  });
}

t.test("runs both simulated devices whatever `enabled` says, prints where, stops on SIGTERM with exit 0", async (t) => {
  const dir = t.testdir({
    "gateway.yaml": ["keys:", "  dir: keys", "sim:", "  modbus: { enabled: false, port: 0, unitId: 7, scanMs: 0 }", "  opcua: { enabled: false, port: 0, scanMs: 0 }", ""].join("\n"),
  });
  const r = run(t, ["sim", "--config", join(dir, "gateway.yaml")]);
  const plcPort = Number((await waitFor(r, "the PLC line", () => /boiler PLC \(boiler-plc\): +tcp:\/\/127\.0\.0\.1:(\d+), unit 7\n/.exec(r.out)))[1]);
  const url = (await waitFor(r, "the OPC UA line", () => /packaging line \(packaging-line\): +(opc\.tcp:\/\/127\.0\.0\.1:\d+)\n/.exec(r.out)))[1] as string;
  await waitFor(r, "the ready line", () => (r.out.includes("stop with Ctrl-C") ? true : null));

  // Modbus: FC3 holding 100 (the boiler's setpoint, 70 °C at start) from unit 7.
  const m = await RawClient.connect(plcPort);
  m.send(frame(1, 7, [0x03, 0x00, 100, 0x00, 0x01]));
  const [answer] = await m.next();
  m.close();
  t.same([...(answer?.pdu ?? [])], [0x03, 0x02, 0x00, 70], "the setpoint read over Modbus TCP");

  // OPC UA: an anonymous session over None, as the sim allows, reads the line's speed.
  const cm = new OPCUACertificateManager({ rootFolder: join(dir, "client-pki"), automaticallyAcceptUnknownCertificate: true, disableFileWatchers: true });
  t.teardown(() => cm.dispose());
  const client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 }, clientCertificateManager: cm, securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None });
  await client.connect(url);
  const session = await client.createSession();
  const dv = await session.read({ nodeId: LINE_NODES.speed, attributeId: AttributeIds.Value });
  await session.close();
  await client.disconnect();
  t.equal(dv.statusCode.name, "Good");
  t.type(dv.value.value, "number", "the line's speed read over OPC UA");

  r.child.kill("SIGTERM");
  const { code } = await r.closed;
  t.equal(code, 0);
  t.match(r.out, /simulated plant stopped\n/);
  t.ok(await refused(plcPort), "the PLC's port is closed");
  t.ok(await refused(Number(new URL(url.replace("opc.tcp:", "http:")).port)), "the OPC UA port is closed");
});

t.test("--help prints the usage and exits 0; a bad config exits 1 naming the file, before any device starts", async (t) => {
  const help = run(t, ["sim", "--help"]);
  t.equal((await help.closed).code, 0);
  t.match(help.out, /^usage: ztgate sim \[--config F\]\n/);

  const dir = t.testdir({ "gateway.yaml": "sim:\n  modbus: { port: 99999 }\n" });
  const bad = run(t, ["sim", "--config", join(dir, "gateway.yaml")]);
  t.equal((await bad.closed).code, 1);
  t.match(bad.err, /ZT_CONFIG_INVALID: .*gateway\.yaml: 1 error\n.*gateway\.yaml:2:\d+: sim\.modbus\.port/);
  t.equal(bad.out, "", "nothing on stdout (no device line, no node-opcua warning)");

  const usage = run(t, ["sim", "--nope"]);
  t.equal((await usage.closed).code, 2);
});

t.test("in-process (the same command, stopped through its signal option): both devices up, then stopped, exit 0", async (t) => {
  const { simCommand } = await import("../../src/cli/sim.js");
  const dir = t.testdir({ "gateway.yaml": ["keys:", "  dir: keys", "sim:", "  modbus: { port: 0, scanMs: 0 }", "  opcua: { port: 0, scanMs: 0 }", ""].join("\n") });
  const out: string[] = [];
  const stop = new AbortController();
  const running = simCommand(["--config", join(dir, "gateway.yaml")], { out: (l) => out.push(l), err: (l) => out.push(`err: ${l}`) }, { signal: stop.signal });
  const end = Date.now() + WAIT_MS;
  while (!out.some((l) => l.includes("stop with Ctrl-C"))) {
    if (Date.now() > end) throw new Error(`not started: ${out.join("\n")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/tcp:\/\/127\.0\.0\.1:(\d+), unit 1$/.exec(out[0] as string)?.[1]);
  t.notOk(await refused(port), "the PLC listens");
  stop.abort();
  t.equal(await running, 0);
  t.equal(out.at(-1), "simulated plant stopped");
  t.ok(await refused(port), "and no longer");
});
