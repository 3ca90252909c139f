// `ztgate session list | revoke | keep` (SPEC §2, §3): clients of the gateway's session API,
// not of the registry itself (it lives in the running gateway's memory). Where the API is:
// --url, else `http` and `keys.dir` of gateway.yaml (or --config), trusting keys.dir/ca.pem.
// The bearer token: --token, --token-file, or ZTGATE_TOKEN.
import { readFile } from "node:fs/promises";
import { watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { UsageError, ZtError } from "../errors.js";
import { defaultConfigPath, loadConfig } from "../config/load.js";
import { KEY_FILES } from "../auth/keys.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

const CONNECTION = "[--url URL] [--ca PEM] [--config F]";
const TOKEN = "[--token T | --token-file F]";
const LIST_USAGE = `ztgate session list [--sub S] [--json] ${CONNECTION} ${TOKEN}`;
const REVOKE_USAGE = `ztgate session revoke (--id ID | --sub S | --jti J) ${CONNECTION} ${TOKEN}`;
const KEEP_USAGE = `ztgate session keep --token-file F [--id ID] [--source IP] ${CONNECTION}`;
const USAGE = "ztgate session (list | revoke | keep) …; ztgate session COMMAND --help";

const COMMON_HELP = `
where the gateway is:
  --url URL        the HTTP API (default: http.host, http.port and http.tls of gateway.yaml:
                   https://127.0.0.1:8443)
  --ca PEM         the CA that signed its certificate (default: keys.dir/ca.pem of gateway.yaml)
  --config F       the gateway.yaml to read those from (default: this repository's)`;
const TOKEN_HELP = `
the bearer token: --token T, --token-file F (one JWT, whitespace around it ignored), or the
environment variable ZTGATE_TOKEN`;

const HELP = {
  list: `usage: ${LIST_USAGE}
Lists open sessions and leases: the caller's own; with a gateway admin role everyone's.
  --sub S          only the sessions of subject S
  --json           the sessions as a JSON array (the API's objects) instead of a table
${COMMON_HELP}${TOKEN_HELP}`,
  revoke: `usage: ${REVOKE_USAGE}
Ends sessions through the admin API; needs a role of gateway.adminRoles (except --id for one's own).
  --id ID          ends one session or lease (its connections are closed)
  --sub S          revokes every token of S issued so far and ends all of S's sessions
  --jti J          revokes one token and ends every session resting on it
${COMMON_HELP}${TOKEN_HELP}`,
  keep: `usage: ${KEEP_USAGE}
Keeps a Modbus lease alive while an identity agent refreshes the token in F: opens a lease
with the token in F (or takes over lease ID), then renews it with the token in F every time F
changes (including when F is replaced by a rename). One line per event on stderr. Stops on
Ctrl-C or SIGTERM with exit 0 and leaves the lease in place.
  --token-file F   the file holding the current token (required)
  --id ID          an open lease to keep (default: open a new one)
  --source IP      the address the lease serves (default: this client's; another needs the admin role)
${COMMON_HELP}`,
} as const;

/** Lets a test (or an embedding) stop `keep`; it also stops on SIGINT/SIGTERM. */
export interface SessionCommandOptions {
  readonly signal?: AbortSignal;
}

export async function sessionCommand(argv: string[], io: Io, options: SessionCommandOptions = {}): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "list": return listCmd(rest, io);
    case "revoke": return revokeCmd(rest, io);
    case "keep": return keepCmd(rest, io, options.signal);
    case "--help": case "-h": case "help":
      io.out([HELP.list, HELP.revoke, HELP.keep].map((h) => h.split("\n")[0]).join("\n"));
      return 0;
    default: throw new UsageError(`${sub === undefined ? "no session command given" : `unknown session command "${sub}"`}; usage: ${USAGE}`);
  }
}

const str = { type: "string" } as const;
const connectionOptions = { url: str, ca: str, config: str, help: { type: "boolean", short: "h" } } as const;
const tokenOptions = { token: str, "token-file": str } as const;

// ─── where the API is ───────────────────────────────────────────────────────────────────

interface Endpoint {
  readonly url: URL;
  /** PEM of the CA to trust (https only). */
  readonly ca?: string;
}

async function endpoint(v: { url?: string | undefined; ca?: string | undefined; config?: string | undefined }, usage: string): Promise<Endpoint> {
  const config = () => loadConfig(v.config !== undefined ? path.resolve(v.config) : defaultConfigPath());
  let url: URL;
  if (v.url !== undefined) {
    url = parseUrl(v.url, usage);
  } else {
    const c = await config();
    if (!c.http.enabled) throw new UsageError(`http.enabled is false in ${v.config ?? "gateway.yaml"}: that gateway serves no HTTP API; give --url`);
    url = new URL(`${c.http.tls ? "https" : "http"}://${connectHost(c.http.host)}:${c.http.port}`);
  }
  if (url.protocol === "http:") return { url };
  const caFile = v.ca !== undefined ? path.resolve(v.ca) : path.join((await config()).keys.dir, KEY_FILES.caCert);
  try {
    return { url, ca: await readFile(caFile, "utf8") };
  } catch (e) {
    throw new ZtError("ZT_KEYS_INVALID", `${caFile}: cannot read the CA certificate to trust the gateway with (${(e as Error).message}); give --ca PEM`);
  }
}

function parseUrl(text: string, usage: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url "${text}": not a URL; usage: ${usage}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new UsageError(`--url "${text}": must be an https:// (or http://) URL`);
  return url;
}

/** Where a client reaches a listener bound to `host`: the wildcard addresses mean this machine. */
function connectHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "::1") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

// ─── the token ──────────────────────────────────────────────────────────────────────────

async function readTokenFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new ZtError("ZT_TOKEN_UNREADABLE", `--token-file ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return tokenIn(text, `--token-file ${file}`);
}

function tokenIn(text: string, where: string): string {
  const token = text.trim();
  if (token === "") throw new ZtError("ZT_TOKEN_UNREADABLE", `${where}: holds no token (empty)`);
  if (/\s/.test(token)) throw new ZtError("ZT_TOKEN_UNREADABLE", `${where}: holds more than one word; expected one JWT`);
  return token;
}

async function bearer(v: { token?: string | undefined; "token-file"?: string | undefined }, usage: string): Promise<string> {
  if (v.token !== undefined && v["token-file"] !== undefined) throw new UsageError(`give --token or --token-file, not both; usage: ${usage}`);
  if (v.token !== undefined) return tokenIn(v.token, "--token");
  if (v["token-file"] !== undefined) return readTokenFile(path.resolve(v["token-file"]));
  const env = process.env["ZTGATE_TOKEN"];
  if (env !== undefined && env.trim() !== "") return tokenIn(env, "ZTGATE_TOKEN");
  throw new UsageError(`no token: give --token T, --token-file F or set ZTGATE_TOKEN; usage: ${usage}`);
}

// ─── the HTTP client ────────────────────────────────────────────────────────────────────

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown> | undefined;
}

const TIMEOUT_MS = 15_000;

/** One request; an answer of any status resolves, only a failure to get one rejects (ZT_API_UNREACHABLE). */
function call(ep: Endpoint, method: string, route: string, token: string, body?: unknown, signal?: AbortSignal): Promise<Answer> {
  const url = new URL(ep.url.pathname.replace(/\/$/, "") + route, ep.url);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const where = `${method} ${url.href}`;
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = {
      method,
      // One connection per request: a keep-alive socket would outlive the command.
      agent: false,
      timeout: TIMEOUT_MS,
      headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(payload !== undefined && { "content-type": "application/json" }) },
      ...(ep.ca !== undefined && { ca: ep.ca }),
      ...(signal && { signal }),
    };
    const req = (url.protocol === "https:" ? https : http).request(url, opts, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("error", (e) => reject(unreachable(where, e)));
      res.on("end", () => {
        let parsed: unknown;
        try {
          parsed = text === "" ? undefined : JSON.parse(text);
        } catch {
          parsed = { detail: text.slice(0, 200) };
        }
        resolve({ status: res.statusCode ?? 0, body: typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on("error", (e) => reject(unreachable(where, e)));
    req.end(payload);
  });
}

function unreachable(where: string, e: NodeJS.ErrnoException): Error {
  if (e.name === "AbortError") return e;
  const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(e.code ?? "") ? " (the gateway's certificate is not signed by the CA given: --ca, or keys.dir/ca.pem)" : "";
  const hint = e.code === "ECONNREFUSED" ? " (is the gateway running? --url, or http.host/http.port of gateway.yaml)" : "";
  return new ZtError("ZT_API_UNREACHABLE", `${where}: ${e.code !== undefined ? `${e.code}: ` : ""}${e.message}${tls}${hint}`);
}

/** The problem document of a refusal, in one line: `403 Not allowed: detail (reason R, decision D)`. */
function problemText(a: Answer): string {
  const b = a.body ?? {};
  const title = typeof b["title"] === "string" ? ` ${b["title"]}` : "";
  const detail = typeof b["detail"] === "string" ? `: ${b["detail"]}` : "";
  const notes = [typeof b["reason"] === "string" && `reason ${b["reason"]}`, typeof b["decisionId"] === "string" && `decision ${b["decisionId"]}`].filter(Boolean);
  return `${a.status}${title}${detail}${notes.length > 0 ? ` (${notes.join(", ")})` : ""}`;
}

function refused(where: string, a: Answer): ZtError {
  return new ZtError("ZT_API_REFUSED", `${where}: ${problemText(a)}`);
}

/** Calls, and turns any answer but `ok` into ZT_API_REFUSED. */
async function expect(ep: Endpoint, ok: number, method: string, route: string, token: string, body?: unknown): Promise<Record<string, unknown>> {
  const a = await call(ep, method, route, token, body);
  if (a.status !== ok) throw refused(`${method} ${route}`, a);
  return a.body ?? {};
}

// ─── list ───────────────────────────────────────────────────────────────────────────────

interface SessionView {
  id: string;
  kind: string;
  sub: string;
  roles: string[];
  via: string;
  source: string | null;
  expiresAt: string | null;
}

async function listCmd(argv: string[], io: Io): Promise<number> {
  const { values: v } = parse(argv, { ...connectionOptions, ...tokenOptions, sub: str, json: { type: "boolean" } }, LIST_USAGE);
  if (v.help) return help(io, "list");
  const token = await bearer(v, LIST_USAGE);
  const ep = await endpoint(v, LIST_USAGE);
  const body = await expect(ep, 200, "GET", `/v1/sessions${v.sub !== undefined ? `?sub=${encodeURIComponent(v.sub)}` : ""}`, token);
  const sessions = (Array.isArray(body["sessions"]) ? body["sessions"] : []) as SessionView[];
  if (v.json) {
    io.out(JSON.stringify(sessions, null, 2));
    return 0;
  }
  const rows = sessions.map((s) => [s.id, s.kind === "lease" ? "lease" : `${s.kind}/${s.via}`, s.sub, s.roles.join(",") || "-", s.source ?? "-", s.expiresAt ?? "-"]);
  for (const line of table(["ID", "KIND/VIA", "SUB", "ROLES", "SOURCE", "EXPIRES"], rows)) io.out(line);
  if (rows.length === 0) io.out("(no open sessions)");
  return 0;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join("  ");
  return [line(header), ...rows.map(line)];
}

// ─── revoke ─────────────────────────────────────────────────────────────────────────────

async function revokeCmd(argv: string[], io: Io): Promise<number> {
  const { values: v } = parse(argv, { ...connectionOptions, ...tokenOptions, id: str, sub: str, jti: str }, REVOKE_USAGE);
  if (v.help) return help(io, "revoke");
  const given = (["id", "sub", "jti"] as const).filter((k) => v[k] !== undefined);
  if (given.length !== 1) throw new UsageError(`${given.length === 0 ? "say what to revoke" : `give one of ${given.map((k) => `--${k}`).join(", ")}, not several`}: --id ID, --sub S or --jti J; usage: ${REVOKE_USAGE}`);
  for (const k of given) if (v[k] === "") throw new UsageError(`--${k} must not be empty; usage: ${REVOKE_USAGE}`);
  const token = await bearer(v, REVOKE_USAGE);
  const ep = await endpoint(v, REVOKE_USAGE);
  if (v.id !== undefined) {
    await expect(ep, 204, "DELETE", `/v1/sessions/${encodeURIComponent(v.id)}`, token);
    io.out(`ended session ${v.id}`);
    return 0;
  }
  const body = await expect(ep, 200, "POST", "/v1/sessions/revoke", token, v.sub !== undefined ? { sub: v.sub } : { jti: v.jti });
  const ended = (Array.isArray(body["ended"]) ? body["ended"] : []) as string[];
  const what = v.sub !== undefined ? `the tokens of ${v.sub} issued so far` : `token ${v.jti}`;
  io.out(`revoked ${what}; ended ${ended.length} session${ended.length === 1 ? "" : "s"}${ended.length > 0 ? `: ${ended.join(", ")}` : ""}`);
  return 0;
}

// ─── keep ───────────────────────────────────────────────────────────────────────────────

interface Lease {
  id: string;
  sub: string;
  source: string | null;
  expiresAt: string | null;
}

/** Waits this long after the last change of the token file's directory before reading it. */
const DEBOUNCE_MS = 200;
/** While the gateway cannot be reached, the renewal is retried this often. */
const RETRY_MS = 5_000;

async function keepCmd(argv: string[], io: Io, signal: AbortSignal | undefined): Promise<number> {
  const { values: v } = parse(argv, { ...connectionOptions, "token-file": str, id: str, source: str }, KEEP_USAGE);
  if (v.help) return help(io, "keep");
  if (v["token-file"] === undefined || v["token-file"] === "") throw new UsageError(`--token-file is required; usage: ${KEEP_USAGE}`);
  if (v.id === "") throw new UsageError(`--id must not be empty; usage: ${KEEP_USAGE}`);
  const file = path.resolve(v["token-file"]);
  const ep = await endpoint(v, KEEP_USAGE);

  // From here on a signal stops keep cleanly (exit 0), even halfway through its start.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  signal?.addEventListener("abort", onSignal, { once: true });
  const k = new Keeper(ep, file, v.source, io, stop.signal);
  try {
    await k.start(v.id);
    await k.watch();
    k.say(`stopped; ${k.lease ? `lease ${k.lease.id} stays open until its token expires` : "no lease was opened"}`);
    return 0;
  } catch (e) {
    if (!stop.signal.aborted) throw e;
    k.say("stopped while starting; no lease is kept");
    return 0;
  } finally {
    stop.abort();
    k.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    signal?.removeEventListener("abort", onSignal);
  }
}

/** The state of one `keep`: the lease, the token last sent, the watch and the renewal queue. */
class Keeper {
  lease: Lease | undefined;
  /** The token last answered by the gateway (renewed or refused): not sent again. */
  private current = "";
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private watcher: FSWatcher | undefined;

  constructor(
    private readonly ep: Endpoint,
    private readonly file: string,
    private readonly source: string | undefined,
    private readonly io: Io,
    private readonly stopped: AbortSignal,
  ) {}

  say(line: string): void {
    this.io.err(`ztgate session keep: ${line}`);
  }

  /** Takes over lease `id` (renewed at once with the file's token), or opens one; failing here is fatal. */
  async start(id: string | undefined): Promise<void> {
    this.current = await readTokenFile(this.file);
    if (id !== undefined) {
      const route = `/v1/sessions/${encodeURIComponent(id)}/renew`;
      const a = await call(this.ep, "POST", route, this.current, undefined, this.stopped);
      if (a.status === 200) {
        this.lease = a.body as unknown as Lease;
        this.say(`lease ${this.lease.id} renewed ${describe(this.lease)}; renewing it whenever ${this.file} changes`);
        return;
      }
      if (a.status !== 404) throw refused(`POST ${route}`, a);
      this.say(`lease ${id} is not open; opening a new one`);
    }
    const a = await this.open(this.current);
    if (a.status !== 201) throw refused("POST /v1/sessions", a);
  }

  /** Renews on every change of the file until stopped; rejects only if the watch itself fails. */
  async watch(): Promise<void> {
    // The directory, not the file: an atomic replace (write a temporary file, rename it over F)
    // gives F a new inode, which a watch on F itself would stop seeing.
    const dir = path.dirname(this.file);
    const name = path.basename(this.file);
    try {
      this.watcher = watch(dir, (_event, changed) => {
        if (changed === null || changed === name) this.schedule(DEBOUNCE_MS);
      });
    } catch (e) {
      throw new ZtError("ZT_TOKEN_UNREADABLE", `--token-file ${this.file}: cannot watch ${dir} (${(e as Error).message})`);
    }
    const watcher = this.watcher;
    // A change between the first read and the watch would otherwise wait for the next one.
    this.schedule(0);
    const failed = new Promise<Error>((resolve) => watcher.on("error", resolve));
    const stopped = new Promise<undefined>((resolve) => {
      if (this.stopped.aborted) resolve(undefined);
      this.stopped.addEventListener("abort", () => resolve(undefined), { once: true });
    });
    const e = await Promise.race([stopped, failed]);
    if (e) throw new ZtError("ZT_TOKEN_UNREADABLE", `--token-file ${this.file}: watching ${dir} failed (${e.message})`);
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private async open(token: string): Promise<Answer> {
    const a = await call(this.ep, "POST", "/v1/sessions", token, { protocol: "modbus", ...(this.source !== undefined && { source: this.source }) }, this.stopped);
    if (a.status === 201) {
      this.lease = a.body as unknown as Lease;
      this.say(`lease ${this.lease.id} opened ${describe(this.lease)}; renewing it whenever ${this.file} changes`);
    }
    return a;
  }

  // Renewals run one at a time; a change during one queues exactly one more.
  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(), ms);
  }

  private async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    const r = await this.renew();
    this.running = false;
    if (this.stopped.aborted) return;
    if (this.again) {
      this.again = false;
      this.schedule(0);
    } else if (r === "retry") this.schedule(RETRY_MS);
  }

  /** One renewal with the file's token; reports, never throws. */
  private async renew(): Promise<"done" | "retry"> {
    let token: string;
    try {
      token = await readTokenFile(this.file);
    } catch (e) {
      this.say(`${(e as ZtError).message}; waiting for the next change`);
      return "done";
    }
    // Editors and agents touch files more often than they change tokens.
    if (token === this.current || this.stopped.aborted) return "done";
    const held = this.lease as Lease;
    const route = `/v1/sessions/${encodeURIComponent(held.id)}/renew`;
    try {
      const a = await call(this.ep, "POST", route, token, undefined, this.stopped);
      this.current = token;
      if (a.status === 200) {
        this.lease = a.body as unknown as Lease;
        this.say(`lease ${this.lease.id} renewed ${describe(this.lease)}`);
      } else if (a.status === 404) {
        this.say(`lease ${held.id} is gone (revoked, expired, or not kept across a gateway restart); opening a new one`);
        const o = await this.open(token);
        if (o.status !== 201) this.say(`opening a new lease was refused: ${problemText(o)}; waiting for the next change of ${this.file}`);
      } else {
        this.say(`renewal of lease ${held.id} refused: ${problemText(a)}; the lease keeps its token ${describe(held)}; waiting for the next change of ${this.file}`);
      }
      return "done";
    } catch (e) {
      if (this.stopped.aborted) return "done";
      this.say(`${(e as Error).message}; retrying in ${RETRY_MS / 1000} s`);
      return "retry";
    }
  }
}

function describe(l: Lease): string {
  return `(sub ${l.sub}, source ${l.source ?? "?"}), expires ${l.expiresAt ?? "never"}`;
}

function help(io: Io, cmd: keyof typeof HELP): number {
  io.out(HELP[cmd]);
  return 0;
}
