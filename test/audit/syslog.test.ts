// The syslog export against a real collector on 127.0.0.1: a listener written here that takes
// RFC 6587 octet-counted frames strictly (MSG-LEN must be exact) and parses every message as
// RFC 5424, over plain TCP and TLS, through outages, a crash of the collector, a full spool
// and a restart of the gateway.
import t from "tap";
import type { Test } from "tap";
import { createHash, KeyObject, webcrypto } from "node:crypto";
import { once } from "node:events";
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { setImmediate as turn } from "node:timers/promises";
import { SYSLOG_SD_ID, SyslogExporter, escapeParamValue, formatMessage, frameMessage, headerField, severityOf, syslogOptions } from "../../src/audit/syslog.js";
import type { SyslogExporterOptions, SyslogRecord } from "../../src/audit/syslog.js";
import { FrameSpool, scanFrame } from "../../src/audit/syslog-spool.js";
import { x509 } from "../../src/auth/x509.js";
import { parseConfig } from "../../src/config/load.js";

// ---------------------------------------------------------------------------------------------
// The collector's parsers: written from the RFCs, sharing nothing with the code under test.

interface SdElement {
  id: string;
  params: Record<string, string>;
}

interface Message {
  /** MSG-LEN as it was on the wire. */
  len: number;
  pri: number;
  facility: number;
  severity: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sd: SdElement[] | null;
  bom: boolean;
  msg: string;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;
const SD_NAME = /^[\x21-\x7e]{1,32}$/;

/** One SYSLOG-MSG (RFC 5424 §6), strictly: throws saying what is wrong. */
function parse5424(bytes: Buffer): Omit<Message, "len"> {
  // fatal: the whole message must be valid UTF-8; ignoreBOM: keep the BOM where it is.
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at ${i} in ${JSON.stringify(text.slice(0, 160))}`);
  };
  const head = /^<(0|[1-9]\d{0,2})>([1-9]\d{0,2}) /.exec(text) ?? fail("no <PRI>VERSION SP");
  const pri = Number(head[1]);
  if (pri > 191) fail("PRI above 191");
  i = head[0].length;
  const token = (name: string, max: number): string => {
    const end = text.indexOf(" ", i);
    if (end < 0) fail(`no SP after ${name}`);
    const v = text.slice(i, end);
    if (!/^[\x21-\x7e]+$/.test(v)) fail(`${name} is not PRINTUSASCII`);
    if (v.length > max) fail(`${name} longer than ${max}`);
    i = end + 1;
    return v;
  };
  const timestamp = token("TIMESTAMP", 64);
  if (timestamp !== "-" && (!RFC3339.test(timestamp) || Number.isNaN(Date.parse(timestamp)))) fail("bad TIMESTAMP");
  const hostname = token("HOSTNAME", 255);
  const appName = token("APP-NAME", 48);
  const procId = token("PROCID", 128);
  const msgId = token("MSGID", 32);
  const sdName = (stop: string): string => {
    let j = i;
    while (j < text.length && !stop.includes(text[j] as string)) j++;
    const v = text.slice(i, j);
    if (!SD_NAME.test(v) || /[= \]"]/.test(v)) fail(`bad SD-NAME ${JSON.stringify(v)}`);
    i = j;
    return v;
  };
  let sd: SdElement[] | null = null;
  if (text[i] === "-") i++;
  else {
    sd = [];
    if (text[i] !== "[") fail("STRUCTURED-DATA is neither - nor [");
    while (text[i] === "[") {
      i++;
      const id = sdName(" ]");
      if (!id.includes("@") ? false : !/^[^@]+@\d+(\.\d+)*$/.test(id)) fail("bad enterprise SD-ID");
      const params: Record<string, string> = {};
      while (text[i] === " ") {
        i++;
        const name = sdName("=");
        if (text[i++] !== "=" || text[i++] !== '"') fail("expected =\"");
        let value = "";
        for (;;) {
          const c = text[i] ?? fail("unterminated PARAM-VALUE");
          if (c === "\\" && '"\\]'.includes(text[i + 1] ?? "x")) {
            value += text[i + 1];
            i += 2;
          } else if (c === '"') {
            i++;
            break;
          } else if (c === "]") fail("unescaped ] in PARAM-VALUE");
          else {
            value += c;
            i++;
          }
        }
        params[name] = value;
      }
      if (text[i++] !== "]") fail("SD-ELEMENT not closed");
      sd.push({ id, params });
    }
  }
  let msg = "";
  if (i < text.length) {
    if (text[i] !== " ") fail("no SP before MSG");
    msg = text.slice(i + 1);
  }
  const bom = msg.startsWith("\uFEFF");
  return { pri, facility: pri >> 3, severity: pri & 7, version: Number(head[2]), timestamp, hostname, appName, procId, msgId, sd, bom, msg: bom ? msg.slice(1) : msg };
}

/**
 * A syslog collector on 127.0.0.1: TCP or TLS, octet counting only (RFC 6587 §3.4.1). Anything
 * that is not `MSG-LEN SP SYSLOG-MSG` with an exact MSG-LEN is an error, and so is a message
 * that is not RFC 5424.
 */
class Collector {
  readonly messages: Message[] = [];
  readonly errors: string[] = [];
  /** Connections that ended inside a frame. */
  truncated = 0;
  connections = 0;
  port = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private paused = false;

  constructor(private readonly tlsOptions?: { key: string; cert: string }) {}

  async listen(port = 0): Promise<number> {
    const server = this.tlsOptions ? tls.createServer(this.tlsOptions) : net.createServer();
    server.on(this.tlsOptions ? "secureConnection" : "connection", (sock: net.Socket) => this.accept(sock));
    server.on("tlsClientError", () => undefined);
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  seqs(): number[] {
    return this.messages.map((m) => Number(m.sd?.[0]?.params["seq"]));
  }

  /** Stop reading (the sockets' buffers fill up, the sender meets backpressure), or go on. */
  pause(paused: boolean): void {
    this.paused = paused;
    for (const s of this.sockets) {
      if (paused) s.pause();
      else s.resume();
    }
  }

  /** A crash: every connection reset, the port closed. */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.resetAndDestroy();
    await this.closeServer();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await this.closeServer();
  }

  private async closeServer(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise((resolve) => server.close(resolve));
  }

  private accept(sock: net.Socket): void {
    this.connections++;
    this.sockets.add(sock);
    if (this.paused) sock.pause();
    let buf: Buffer = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        const sp = buf.indexOf(0x20);
        if (sp < 0) {
          if (buf.length > 10 || !/^[1-9]?\d*$/.test(buf.toString("latin1"))) this.reject(sock, `bad MSG-LEN ${JSON.stringify(buf.subarray(0, 12).toString("latin1"))}`);
          return;
        }
        const lenText = buf.subarray(0, sp).toString("latin1");
        if (!/^[1-9]\d{0,8}$/.test(lenText)) return this.reject(sock, `bad MSG-LEN ${JSON.stringify(lenText)}`);
        const len = Number(lenText);
        if (buf.length < sp + 1 + len) return;
        try {
          this.messages.push({ len, ...parse5424(buf.subarray(sp + 1, sp + 1 + len)) });
        } catch (err) {
          this.errors.push((err as Error).message);
        }
        buf = buf.subarray(sp + 1 + len);
      }
    });
    sock.on("close", () => {
      this.sockets.delete(sock);
      if (buf.length > 0) this.truncated++;
    });
    sock.on("error", () => undefined);
  }

  private reject(sock: net.Socket, why: string): void {
    this.errors.push(why);
    sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Records, and waiting without sleeping a fixed time.

const TYPES = ["decision", "decision", "outcome", "decision", "session", "checkpoint"] as const;

/** A record as the decision log writes it, and its line (with "\n"). */
function makeRecord(seq: number, extra: Record<string, unknown> = {}): { record: SyslogRecord; line: string } {
  const type = TYPES[seq % TYPES.length] as string;
  const hash = createHash("sha256").update(`r${seq}`).digest("hex");
  const record: SyslogRecord = {
    v: 1,
    seq,
    id: `0190b2c4-${String(seq).padStart(4, "0")}-7000-8000-000000000000`,
    time: new Date(Date.UTC(2026, 2, 4, 10, 0, 0) + seq).toISOString().replace("Z", "123Z"),
    type,
    ...(type === "decision" && { decision: seq % 4 === 0 ? "deny" : "allow", reason: "allowed", asset: "boiler-plc" }),
    ...(type === "outcome" && { ref: `d-${seq - 1}`, status: "ok", latencyMs: 1.5 }),
    ...extra,
    prev: "0".repeat(64),
    hash,
  };
  return { record, line: JSON.stringify(record) + "\n" };
}

async function until(what: string, cond: () => boolean, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A port nothing listens on (for now). */
async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A fresh directory, removed after the test (t.testdir() is one directory per test, and some tests need several). */
function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ztgate-syslog-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function spoolFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(".spool"));
}

function spoolDiskBytes(dir: string): number {
  return spoolFiles(dir).reduce((sum, n) => sum + statSync(path.join(dir, n)).size, 0);
}

function exporter(t: Test, options: Partial<SyslogExporterOptions> & { port: number }): SyslogExporter {
  const e = new SyslogExporter({ host: "127.0.0.1", spoolDir: tmp(t), reconnectMs: 10, reconnectMaxMs: 50, hostname: "gw-1", ...options });
  t.teardown(() => e.stop(100));
  return e;
}

/** Every message the collector took is the record's line, with the right header and SD. */
function checkMessages(t: Test, c: Collector, sent: Map<number, { record: SyslogRecord; line: string }>, facility = 16): void {
  t.same(c.errors, [], "every frame and message parsed strictly");
  let bad = 0;
  for (const m of c.messages) {
    const seq = Number(m.sd?.[0]?.params["seq"]);
    const want = sent.get(seq);
    const line = want?.line.slice(0, -1) ?? "";
    const ok =
      want !== undefined &&
      m.version === 1 &&
      m.facility === facility &&
      m.severity === (want.record.decision === "deny" ? 4 : want.record.decision === "allow" ? 6 : 5) &&
      m.timestamp === want.record.time &&
      m.hostname === "gw-1" &&
      m.appName === "ztgate" &&
      m.procId === String(process.pid) &&
      m.msgId === want.record.type &&
      m.sd?.length === 1 &&
      m.sd[0]?.id === SYSLOG_SD_ID &&
      m.sd[0].params["id"] === want.record.id &&
      m.sd[0].params["hash"] === want.record.hash &&
      m.bom &&
      m.msg === line &&
      // MSG-LEN counts bytes: the header, the BOM (3 bytes) and the UTF-8 of the line.
      m.len === Buffer.byteLength(formatMessage(want.record, want.line, { facility, hostname: "gw-1", appName: "ztgate", procId: String(process.pid) }));
    if (!ok && bad++ < 3) t.fail(`message seq ${seq} does not match its record`, { found: m, wanted: want });
  }
  t.equal(bad, 0, `all ${c.messages.length} messages carry their record`);
}

function increasing(seqs: number[]): boolean {
  return seqs.every((s, i) => i === 0 || s > (seqs[i - 1] as number));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// ---------------------------------------------------------------------------------------------

t.test("message format: PRI, header limits, SD escaping, BOM, MSG-LEN in bytes", async (t) => {
  const header = { facility: 16, hostname: "gw-1", appName: "ztgate", procId: "42" };
  const { record, line } = makeRecord(12, { note: "Grüße aus 東京 🔥" });
  t.equal(record.decision, "deny");
  const msg = formatMessage(record, line, header);
  t.equal(msg, `<132>1 ${record.time} gw-1 ztgate 42 decision [ztgate@32473 seq="12" id="${record.id}" hash="${record.hash}"] \uFEFF${line.slice(0, -1)}`);
  t.equal(severityOf({ decision: "allow" }), 6);
  t.equal(severityOf({ decision: "deny" }), 4);
  t.equal(severityOf({}), 5);
  t.match(formatMessage({ ...record, decision: "allow" }, line, { ...header, facility: 4 }), /^<38>1 /, "auth.info");
  t.match(formatMessage({ ...record, type: "outcome", decision: undefined }, line, header), /^<133>1 \S+ gw-1 ztgate 42 outcome /, "local0.notice");

  t.equal(escapeParamValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
  const odd = formatMessage({ ...record, id: 'x"]\\y' }, line, header);
  t.match(odd, ' id="x\\"\\]\\\\y" ');
  t.same(parse5424(Buffer.from(odd)).sd?.[0]?.params["id"], 'x"]\\y', "the collector reads the escaped value back");

  t.equal(headerField("h".repeat(300), 255).length, 255);
  t.equal(headerField("a b\tc\u00e9", 48), "a_b_c_");
  t.equal(headerField("", 48), "-");
  const long = parse5424(Buffer.from(formatMessage({ ...record, type: "t".repeat(40) }, line, { ...header, hostname: headerField("h".repeat(300), 255), appName: headerField("a".repeat(60), 48) })));
  t.equal(long.hostname.length, 255);
  t.equal(long.appName.length, 48);
  t.equal(long.msgId.length, 32);

  t.match(formatMessage({ ...record, time: "yesterday" }, line, header), /^<132>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z gw-1 /, "a bad time becomes now");

  const frame = frameMessage(msg);
  const bytes = Buffer.byteLength(msg, "utf8");
  t.ok(bytes > msg.length + 3, "multi-byte characters make bytes outnumber UTF-16 units");
  t.equal(frame.subarray(0, frame.indexOf(0x20)).toString(), String(bytes), "MSG-LEN is the byte count");
  t.ok(frame.includes(Buffer.from([0x5d, 0x20, 0xef, 0xbb, 0xbf, 0x7b])), "SD, SP, UTF-8 BOM, then the JSON");
  t.same(scanFrame(frame, 0), { kind: "frame", start: String(bytes).length + 1, end: frame.length });
  t.same(scanFrame(frame.subarray(0, 10), 0), { kind: "need-more", end: frame.length }, "MSG-LEN read: the frame's end is known");
  t.same(scanFrame(Buffer.from("12"), 0), { kind: "need-more" });
  t.same(scanFrame(Buffer.from("012 x"), 0), { kind: "malformed" });
  t.same(scanFrame(Buffer.from("1x2 x"), 0), { kind: "malformed" });
  t.same(scanFrame(Buffer.from("1234567890 x"), 0), { kind: "malformed" });
});

t.test("options are checked when the exporter is made", async (t) => {
  const base = { host: "127.0.0.1", port: 514, spoolDir: "/nonexistent" };
  t.throws(() => new SyslogExporter({ ...base, host: "" }), /host is required/);
  t.throws(() => new SyslogExporter({ ...base, port: 0 }), /port 0/);
  t.throws(() => new SyslogExporter({ ...base, facility: 24 }), /facility 24/);
  t.doesNotThrow(() => new SyslogExporter({ ...base, facility: "local7" }));
});

t.test("log.syslog in gateway.yaml: absent is off, present gives the options", async (t) => {
  t.equal(parseConfig("/srv/zt/gateway.yaml", "").log.syslog, undefined);
  t.equal(syslogOptions(parseConfig("/srv/zt/gateway.yaml", "").log.syslog, "/srv/zt"), null);
  const config = parseConfig(
    "/srv/zt/gateway.yaml",
    ["log:", "  syslog:", "    host: logs.example", "    port: 6514", "    tls: { enabled: true, ca: pki/ca.pem, servername: collector }", "    facility: auth", ""].join("\n"),
  );
  t.same(syslogOptions(config.log.syslog, "/srv/zt"), {
    host: "logs.example",
    port: 6514,
    tls: { ca: "/srv/zt/pki/ca.pem", cert: undefined, key: undefined, servername: "collector", rejectUnauthorized: true },
    spoolDir: "/srv/zt/data/syslog-spool",
    spoolMaxBytes: 64 * 1024 * 1024,
    reconnectMs: 1000,
    reconnectMaxMs: 30000,
    facility: "auth",
    appName: "ztgate",
  });
  const plain = parseConfig("/srv/zt/gateway.yaml", "log:\n  syslog:\n    host: 10.1.2.3\n    hostname: gw-7\n");
  t.same(syslogOptions(plain.log.syslog, "/srv/zt")?.tls, undefined);
  t.equal(syslogOptions(plain.log.syslog, "/srv/zt")?.hostname, "gw-7");
  t.throws(() => parseConfig("/srv/zt/gateway.yaml", "log:\n  syslog:\n    port: 514\n"), { code: "ZT_CONFIG_INVALID" }, "a section without host");
});

t.test("plain TCP: every record arrives once, in order, as RFC 5424 in exact frames", async (t) => {
  const c = new Collector();
  const port = await c.listen();
  t.teardown(() => c.close());
  const e = exporter(t, { port });
  const connected: unknown[] = [];
  e.on("connected", (info) => connected.push(info));
  await e.start();
  await until("connected", () => e.stats().connected);
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  for (const seq of range(1, 300)) {
    // Multi-byte text and the characters SD values must escape, in the JSON and in the SD.
    const r = makeRecord(seq, seq % 7 === 0 ? { subject: { sub: "opérateur-東京 🔧" } } : {});
    if (seq % 50 === 0) (r.record as { id: string }).id = `odd"id]\\${seq}`;
    if (seq % 50 === 0) r.line = JSON.stringify(r.record) + "\n";
    sent.set(seq, r);
    e.send(r.record, r.line);
  }
  await until("300 messages", () => c.messages.length >= 300);
  checkMessages(t, c, sent);
  t.same(c.seqs(), range(1, 300));
  t.equal(c.messages.find((m) => m.sd?.[0]?.params["seq"] === "50")?.sd?.[0]?.params["id"], 'odd"id]\\50', "escaped SD value read back");
  t.same(connected, [{ host: "127.0.0.1", port, tls: false }]);
  await until("all acknowledged", () => e.stats().sent === 300);
  t.same(e.stats(), { connected: true, sent: 300, spooled: 0, spoolBytes: 0, dropped: 0 });
  t.equal(c.connections, 1);
});

type KeyPair = { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey };

/** A CA and a server certificate for 127.0.0.1 / localhost, made with @peculiar/x509. */
async function makePki(cn: string) {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const subtle = webcrypto.subtle;
  const caKeys = (await subtle.generateKey(alg, true, ["sign", "verify"])) as KeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 3600_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${cn}`,
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    keys: caKeys,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const serverKeys = (await subtle.generateKey(alg, true, ["sign", "verify"])) as KeyPair;
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=localhost",
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  const key = KeyObject.from(serverKeys.privateKey).export({ type: "pkcs8", format: "pem" }) as string;
  return { caPem: ca.toString("pem"), certPem: server.toString("pem"), keyPem: key };
}

t.test("TLS: the collector's certificate is verified against the CA", async (t) => {
  const pki = await makePki("syslog test CA");
  const c = new Collector({ key: pki.keyPem, cert: pki.certPem });
  const port = await c.listen();
  t.teardown(() => c.close());
  const caFile = path.join(tmp(t), "ca.pem");
  writeFileSync(caFile, pki.caPem);

  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  const byPath = exporter(t, { port, tls: { ca: caFile } });
  const connected: unknown[] = [];
  byPath.on("connected", (info) => connected.push(info));
  await byPath.start();
  for (const seq of range(1, 60)) {
    const r = makeRecord(seq, { text: "Prüfung ✓" });
    sent.set(seq, r);
    byPath.send(r.record, r.line);
  }
  await until("60 messages over TLS", () => c.messages.length >= 60);
  t.same(connected, [{ host: "127.0.0.1", port, tls: true }]);
  await byPath.stop();

  // The CA as PEM text, and the name checked is localhost rather than the IP address.
  const byText = exporter(t, { port, tls: { ca: pki.caPem, servername: "localhost" } });
  await byText.start();
  for (const seq of range(61, 80)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    byText.send(r.record, r.line);
  }
  await until("80 messages over TLS", () => c.messages.length >= 80);
  checkMessages(t, c, sent);
  t.same(c.seqs(), range(1, 80));

  // A collector whose certificate does not chain to the configured CA gets nothing.
  const other = await makePki("some other CA");
  const wrong = exporter(t, { port, tls: { ca: other.caPem } });
  const failures: Array<{ error?: Error; wasConnected: boolean }> = [];
  wrong.on("disconnected", (info) => failures.push(info));
  await wrong.start();
  for (const seq of range(81, 90)) wrong.send(makeRecord(seq).record, makeRecord(seq).line);
  await until("a refused handshake", () => failures.length >= 2);
  t.match(failures[0], { wasConnected: false, error: { code: /CERT|SIGNATURE|ISSUER/ } });
  await until("spooled", () => wrong.stats().spooled === 10);
  t.equal(c.messages.length, 80, "nothing went to an unverified collector");
  t.equal(wrong.stats().connected, false);
});

t.test("TLS material that cannot be read is a start error", async (t) => {
  const dir = tmp(t);
  const missing = new SyslogExporter({ host: "127.0.0.1", port: 1, spoolDir: dir, tls: { ca: path.join(dir, "nope.pem") } });
  await t.rejects(missing.start(), { code: "ZT_CONFIG_INVALID", message: /syslog TLS ca .*nope\.pem/ });
  const half = new SyslogExporter({ host: "127.0.0.1", port: 1, spoolDir: dir, tls: { cert: "-----BEGIN CERTIFICATE-----\n" } });
  await t.rejects(half.start(), { code: "ZT_CONFIG_INVALID", message: /cert and key go together/ });
  const garbage = new SyslogExporter({ host: "127.0.0.1", port: 1, spoolDir: dir, tls: { ca: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n" } });
  await t.rejects(garbage.start(), { code: "ZT_CONFIG_INVALID", message: /^syslog TLS: / }, "PEM that does not parse");
  writeFileSync(path.join(dir, "file"), "");
  const badDir = new SyslogExporter({ host: "127.0.0.1", port: 1, spoolDir: path.join(dir, "file", "spool") });
  await t.rejects(badDir.start(), { code: "ZT_CONFIG_INVALID", message: /syslog spool directory/ });
});

t.test("collector down at start: spooled, then drained in order, then live", async (t) => {
  const port = await freePort();
  const dir = tmp(t);
  const e = exporter(t, { port, spoolDir: dir });
  const events: string[] = [];
  e.on("disconnected", (i) => events.push(`disconnected ${i.wasConnected}`));
  e.on("connected", () => events.push("connected"));
  // Sent before start() too: those wait for the spool to open.
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  const send = (seq: number) => {
    const r = makeRecord(seq);
    sent.set(seq, r);
    e.send(r.record, r.line);
  };
  send(1);
  await e.start();
  await until("a refused connection", () => events.length > 0);
  for (const seq of range(2, 100)) send(seq);
  await until("100 spooled", () => e.stats().spooled === 100);
  await turn();
  t.ok(spoolFiles(dir).length > 0, "spooled on disk");
  t.equal(e.stats().spoolBytes, spoolDiskBytes(dir));
  t.equal(e.stats().connected, false);
  t.match(events[0], "disconnected false");

  const c = new Collector();
  await c.listen(port);
  t.teardown(() => c.close());
  await until("the spool drained", () => c.messages.length >= 100);
  for (const seq of range(101, 150)) send(seq);
  await until("150 messages", () => c.messages.length >= 150);
  t.same(c.seqs(), range(1, 150), "nothing lost, nothing twice, in order");
  checkMessages(t, c, sent);
  t.same(spoolFiles(dir), [], "the drained spool files are gone");
  t.match(e.stats(), { connected: true, spooled: 0, spoolBytes: 0, dropped: 0 });
  t.equal(events.filter((x) => x === "connected").length, 1);
});

t.test("collector killed mid-stream: no crash, spooled, recovered in order on restart", async (t) => {
  const c1 = new Collector();
  const port = await c1.listen();
  const e = exporter(t, { port });
  let ackedAtLoss = -1;
  e.on("disconnected", (i) => {
    if (i.wasConnected) ackedAtLoss = e.stats().sent;
  });
  await e.start();
  await until("connected", () => e.stats().connected);
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  let killed = false;
  for (const seq of range(1, 3000)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    e.send(r.record, r.line);
    if (seq % 25 === 0) await turn();
    if (!killed && c1.messages.length >= 800) {
      killed = true;
      await c1.kill();
    }
  }
  t.ok(killed, "the collector died while records were flowing");
  await until("the loss noticed", () => ackedAtLoss >= 0);
  await until("the rest spooled", () => e.stats().spooled > 0 && !e.stats().connected);

  const c2 = new Collector();
  await c2.listen(port);
  t.teardown(() => c2.close());
  await until("the last record", () => c2.seqs().includes(3000));
  const all = [...c1.seqs(), ...c2.seqs()];
  t.ok(increasing(all), "order kept across the crash, nothing twice");
  const got = new Set(all);
  const missing = range(1, 3000).filter((s) => !got.has(s));
  // Only what the kernel had taken before the reset can be lost (TCP syslog has no acks);
  // everything not yet handed to it was spooled and sent again.
  t.ok(
    missing.every((s) => s <= ackedAtLoss),
    `lost only frames already in the kernel at the crash (${missing.length} lost, all ≤ ${ackedAtLoss})`,
  );
  t.same(c1.errors, []);
  checkMessages(t, c2, sent);
  t.match(e.stats(), { connected: true, spooled: 0, dropped: 0 });
});

t.test("spool bound: the oldest go first and are counted", async (t) => {
  const port = await freePort();
  const max = 16 * 1024;
  const dir = tmp(t);
  const e = exporter(t, { port, spoolDir: dir, spoolMaxBytes: max });
  const drops: Array<{ count: number; reason: string }> = [];
  e.on("dropped", (d) => drops.push(d));
  await e.start();
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  for (const seq of range(1, 300)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    e.send(r.record, r.line);
    if (seq % 10 === 0) await turn();
  }
  await turn();
  const { dropped, spooled, spoolBytes } = e.stats();
  t.ok(dropped > 0, `${dropped} dropped`);
  t.equal(dropped + spooled, 300, "every record is either spooled or counted as dropped");
  t.equal(
    drops.reduce((n, d) => n + d.count, 0),
    dropped,
    "the dropped events add up",
  );
  t.ok(
    drops.every((d) => d.reason === "spool-full"),
    "for a full spool",
  );
  t.ok(spoolBytes <= max && spoolDiskBytes(dir) <= max, `the spool stays within ${max} bytes`);

  const c = new Collector();
  await c.listen(port);
  t.teardown(() => c.close());
  await until("the spool drained", () => c.messages.length >= spooled);
  t.same(c.seqs(), range(dropped + 1, 300), "what is left is the newest, in order");
  checkMessages(t, c, sent);
});

t.test("a gateway restart with a non-empty spool: the next exporter sends it first", async (t) => {
  const port = await freePort();
  const dir = tmp(t);
  const first = new SyslogExporter({ host: "127.0.0.1", port, spoolDir: dir, reconnectMs: 10, hostname: "gw-1" });
  await first.start();
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  for (const seq of range(1, 40)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    first.send(r.record, r.line);
  }
  await first.stop();
  // A record that arrives after stop() still goes to the spool.
  const late = makeRecord(41);
  sent.set(41, late);
  first.send(late.record, late.line);
  t.equal(first.stats().spooled, 41);
  // A crash in mid-append leaves half a frame at the end of the newest file.
  const files = spoolFiles(dir).sort();
  appendFileSync(path.join(dir, files[files.length - 1] as string), "512 <134>1 2026-");

  const c = new Collector();
  await c.listen(port);
  t.teardown(() => c.close());
  const second = exporter(t, { port, spoolDir: dir });
  const drops: string[] = [];
  second.on("dropped", (d) => drops.push(d.reason));
  await second.start();
  t.same(drops, ["spool-torn"], "the torn tail is cut off and counted");
  await until("the old spool", () => c.messages.length >= 41);
  for (const seq of range(42, 50)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    second.send(r.record, r.line);
  }
  await until("50 messages", () => c.messages.length >= 50);
  t.same(c.seqs(), range(1, 50));
  t.equal(c.truncated, 0);
  checkMessages(t, c, sent);
  t.same(spoolFiles(dir), []);
});

t.test("backpressure: a collector that stops reading; memory, then spool, then all of it in order", async (t) => {
  const c = new Collector();
  c.pause(true);
  const port = await c.listen();
  t.teardown(() => c.close());
  const e = exporter(t, { port, memoryMaxBytes: 64 * 1024 });
  await e.start();
  await until("connected", () => e.stats().connected);
  const pad = "x".repeat(4000);
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  // Loopback buffers hold megabytes: 16 MB is well past what the kernel will take.
  const n = 4000;
  for (const seq of range(1, n)) {
    const r = makeRecord(seq, { pad });
    sent.set(seq, r);
    e.send(r.record, r.line);
    if (seq % 100 === 0) await turn();
  }
  await turn();
  t.ok(e.stats().spooled > 0, `${e.stats().spooled} overflowed to the spool`);
  t.ok(e.stats().sent < n, "the socket was full");
  c.pause(false);
  await until(`${n} messages`, () => c.messages.length >= n, 60000);
  t.same(c.seqs(), range(1, n));
  checkMessages(t, c, sent);
  await until("all acknowledged", () => e.stats().sent === n);
  t.match(e.stats(), { spooled: 0, dropped: 0 });
});

t.test("stop(): what is written gets a grace period, the rest is spooled for next time", async (t) => {
  const c = new Collector();
  const port = await c.listen();
  t.teardown(() => c.close());
  const dir = tmp(t);
  const first = new SyslogExporter({ host: "127.0.0.1", port, spoolDir: dir, hostname: "gw-1" });
  await first.start();
  await until("connected", () => first.stats().connected);
  const sent = new Map<number, { record: SyslogRecord; line: string }>();
  for (const seq of range(1, 200)) {
    const r = makeRecord(seq);
    sent.set(seq, r);
    first.send(r.record, r.line);
  }
  await first.stop();
  await until("the first connection closed", () => c.truncated === 0 && c.messages.length + first.stats().spooled >= 200);
  const second = exporter(t, { port, spoolDir: dir });
  await second.start();
  await until("200 messages", () => c.messages.length >= 200);
  t.same(c.seqs(), range(1, 200), "nothing lost, nothing twice");
  t.equal(c.truncated, 0);
  checkMessages(t, c, sent);
});

t.test("send() never throws into the decision log", async (t) => {
  const e = exporter(t, { port: await freePort() });
  e.on("dropped", () => {
    throw new Error("a listener that throws");
  });
  t.doesNotThrow(() => e.send(null as unknown as SyslogRecord, "{}\n"));
  t.doesNotThrow(() => e.send(makeRecord(1).record, undefined as unknown as string));
  t.equal(e.stats().dropped, 2);
  await e.start();
  await e.stop();
  await e.stop();
});

t.test("the spool on its own: order across files, cursor, bound, damage", async (t) => {
  const frame = (i: number, size = 100) => frameMessage(`m${i} ${"x".repeat(size)}`);
  const text = (frames: Buffer[]) => frames.map((f) => f.toString().split(" ")[1]);
  const dir = tmp(t);
  const drops: string[] = [];
  const open = async (maxBytes = 100_000) => {
    const s = new FrameSpool({ dir, maxBytes, segmentBytes: 1000, onDrop: (n, why) => drops.push(`${n} ${why}`) });
    await s.open();
    return s;
  };

  const a = await open();
  for (let i = 1; i <= 30; i++) a.append(frame(i));
  a.flush();
  t.equal(a.frames, 30);
  t.ok(spoolFiles(dir).length >= 3, "segments of about 1000 bytes");
  t.equal(a.bytes, spoolDiskBytes(dir));
  // A chunk smaller than one frame still gives one whole frame.
  t.same(text(a.read(10)), ["m1"]);
  t.same(text(a.read(250)), ["m2", "m3", "m4"]);
  a.prepend([frame(0)]);
  a.close();
  t.match(readFileSync(path.join(dir, "cursor"), "utf8"), /^\d{16}\.spool 0{13}\d{3}\n$/, "the read position is kept");

  // A restart goes on where the last one stopped: the put-back frame first, then m5.
  const b = await open();
  t.equal(b.frames, 27);
  const all = [];
  for (let got = b.read(500); got.length > 0; got = b.read(500)) all.push(...text(got));
  t.same(all, ["m0", ...range(5, 30).map((i) => `m${i}`)]);
  t.same(spoolFiles(dir), [], "every file read is deleted");
  t.ok(b.empty);
  b.close();
  t.same(drops, []);

  // Bound: a frame larger than the whole spool is dropped alone; otherwise the oldest file goes.
  const c = await open(2500);
  c.append(frameMessage("y".repeat(3000)));
  t.same(drops, ["1 spool-full"]);
  for (let i = 1; i <= 40; i++) c.append(frame(i));
  c.flush();
  t.ok(c.bytes <= 2500 && spoolDiskBytes(dir) <= 2500);
  const lost = drops.slice(1).reduce((n, d) => n + Number(d.split(" ")[0]), 0);
  t.equal(lost + c.frames, 40, "what is not there was counted");
  // Put-back frames that do not fit are dropped from their oldest end.
  c.prepend([frame(-2), frame(-1)]);
  t.equal(drops[drops.length - 1], "2 spool-full");
  const left = text(c.read(100_000));
  t.same(left, range(41 - left.length, 40).map((i) => `m${i}`), "the newest remain, in order");
  c.close();

  // A file changed behind the spool's back: what no longer parses is dropped, counted.
  drops.length = 0;
  const d = await open();
  for (let i = 1; i <= 3; i++) d.append(frame(i));
  d.flush();
  const [name] = spoolFiles(dir);
  writeFileSync(path.join(dir, name as string), "garbage!".repeat(20));
  t.same(d.read(100_000), []);
  t.same(drops, ["3 spool-torn"]);
  t.ok(d.empty);

  // The directory vanishes: appends are dropped as I/O failures, nothing throws.
  rmSync(dir, { recursive: true, force: true });
  d.append(frame(9));
  t.doesNotThrow(() => d.flush());
  t.same(drops, ["3 spool-torn", "1 spool-io"]);
  d.prepend([frame(10)]);
  t.same(drops, ["3 spool-torn", "1 spool-io", "1 spool-io"]);
  d.close();
});

t.test("the decision log exports every record once it is on disk, line for line", async (t) => {
  const { DecisionLog } = await import("../../src/audit/writer.js");
  const { settings, keys, decision } = await import("./helpers.js");
  const c = new Collector();
  const port = await c.listen();
  t.teardown(() => c.close());
  const e = exporter(t, { port });
  await e.start();
  const dir = tmp(t);
  const log = await DecisionLog.open(settings(path.join(dir, "log")), { signingKey: (await keys()).privateKey });
  log.exportTo((r, line) => e.send(r, line));
  for (let i = 0; i < 20; i++) log.append(decision(i));
  await log.close();
  const lines = readdirSync(path.join(dir, "log")).filter((f) => f.endsWith(".jsonl")).sort()
    .flatMap((f) => readFileSync(path.join(dir, "log", f), "utf8").split("\n").filter(Boolean));
  await until("every record exported", () => c.messages.length >= lines.length);
  t.equal(c.messages.length, lines.length, "one message per record, checkpoints included");
  c.messages.forEach((m, i) => {
    const rec = JSON.parse(lines[i] as string) as { seq: number; hash: string; type: string };
    t.equal(m.msg, lines[i], `message ${i} carries the exact log line`);
    t.equal(m.sd?.[0]?.params["hash"], rec.hash);
    t.equal(m.msgId, rec.type);
  });
});
