// Audit routes (SPEC §5.3, §6), for the roles of gateway.auditorRoles; each use is a logged decision.
//
//   GET /v1/decisions          ?since&until&type&decision&asset&subject&action&rule&reason&gateway
//                              &order=desc|asc&limit=1..1000&cursor → { records, next }
//   GET /v1/decisions/summary  ?since&until&decision&asset&subject&action&rule&reason&gateway
//                              → { total, byAsset, bySubject } (decision records: allows and denies)
//   GET /v1/decisions/stream   ?(the same filters) → text/event-stream: `event: record`, `id: seq`,
//                              `data: <the record's line>` for every record once it is on disk;
//                              `event: end` when the token expires; `: ping` every 15 s
//
// The filters are those of `ztgate log query`, and gateway=false to leave out the decisions about
// the gateway's own endpoints (asset null: sessions, policy, the log itself); since/until take an ISO time or a duration back
// (90s, 15m, 2h, 7d). Pages are newest first by default (order=asc: oldest first, as the CLI).
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import { BadCursorError, accepts, pageLog, summarize } from "../../audit/page.js";
import type { LogFilter, Order } from "../../audit/page.js";
import { parseTimeBound } from "../../audit/query.js";
import { RECORD_TYPES } from "../../audit/record.js";
import type { LogRecord, RecordType } from "../../audit/record.js";
import type { HttpAppDeps } from "./app.js";
import { bearerToken, gate } from "./gate.js";
import { HttpProblem, badRequest, errorType } from "./problem.js";

export const MAX_PAGE = 1000;
const HEARTBEAT_MS = 15_000;
/** A stream whose client reads slower than this many bytes behind is ended (it can reconnect and page). */
const STREAM_MAX_BUFFER = 1 << 20;

const text = { type: "string", minLength: 1, maxLength: 256 } as const;
const filterProps = {
  since: { type: "string", minLength: 1, maxLength: 64 },
  until: { type: "string", minLength: 1, maxLength: 64 },
  type: { type: "string", enum: [...RECORD_TYPES] },
  decision: { type: "string", enum: ["allow", "deny"] },
  asset: text,
  subject: text,
  action: text,
  rule: text,
  reason: text,
  gateway: { type: "boolean" },
} as const;

const pageQuery = {
  type: "object",
  additionalProperties: false,
  properties: {
    ...filterProps,
    order: { type: "string", enum: ["desc", "asc"], default: "desc" },
    limit: { type: "integer", minimum: 1, maximum: MAX_PAGE, default: 100 },
    cursor: { type: "string", minLength: 1, maxLength: 512 },
  },
} as const;

const streamQuery = { type: "object", additionalProperties: false, properties: filterProps } as const;
const { type: _type, ...summaryProps } = filterProps;
const summaryQuery = { type: "object", additionalProperties: false, properties: summaryProps } as const;

const record = { type: "object", additionalProperties: true } as const;
const tally = { allow: { type: "integer" }, deny: { type: "integer" } } as const;
const pageResponse = {
  type: "object",
  required: ["records", "next"],
  properties: { records: { type: "array", items: record }, next: { type: ["string", "null"] } },
} as const;
const summaryResponse = {
  type: "object",
  required: ["total", "byAsset", "bySubject"],
  properties: {
    total: { type: "object", properties: tally },
    byAsset: { type: "array", items: { type: "object", properties: { asset: { type: ["string", "null"] }, ...tally } } },
    bySubject: { type: "array", items: { type: "object", properties: { subject: { type: ["string", "null"] }, ...tally } } },
  },
} as const;

interface FilterQuery {
  since?: string;
  until?: string;
  type?: RecordType;
  decision?: "allow" | "deny";
  asset?: string;
  subject?: string;
  action?: string;
  rule?: string;
  reason?: string;
  gateway?: boolean;
}

interface PageQuery extends FilterQuery {
  order: Order;
  limit: number;
  cursor?: string;
}

function filterOf(q: FilterQuery, now: number): LogFilter {
  const bound = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const t = parseTimeBound(v, now);
    if (t === null) throw badRequest(`${name} "${v}": give an ISO 8601 time (2026-03-04T10:00:00Z) or a duration back from now (90s, 15m, 2h, 7d)`);
    return t;
  };
  const { since, until, ...rest } = q;
  return { ...rest, since: bound("since", since), until: bound("until", until) };
}

export async function auditRoutes(app: FastifyInstance, opts: { deps: HttpAppDeps; log: Logger }): Promise<void> {
  const { deps, log } = opts;
  const g = gate(deps, log, "decisions");
  const now = deps.now ?? Date.now;
  const streams = new Set<ServerResponse>();
  app.addHook("onClose", async () => {
    for (const s of streams) s.end();
  });

  const logDir = (): string => {
    if (!deps.audit) throw new HttpProblem(503, errorType("no-decision-log"), "No decision log", "this gateway was started without a decision log to read");
    return deps.audit.dir;
  };

  /** An auditor's request: authenticated, role checked, both logged. */
  const auditor = async (req: FastifyRequest, what: string) => {
    const p = await g.authenticate(req, "read");
    g.require(req, p, ["gateway.auditorRoles"], "read", what);
    return p;
  };

  app.get<{ Querystring: PageQuery }>("/v1/decisions", { schema: { querystring: pageQuery, response: { 200: pageResponse } } }, async (req) => {
    await auditor(req, "reading the decision log");
    const { order, limit, cursor, ...q } = req.query;
    const dir = logDir();
    try {
      return await pageLog(dir, { filter: filterOf(q, now()), order, limit, ...(cursor !== undefined && { cursor }) });
    } catch (e) {
      if (e instanceof BadCursorError) throw badRequest(`cursor: ${e.message}`);
      throw e;
    }
  });

  app.get<{ Querystring: Omit<FilterQuery, "type"> }>("/v1/decisions/summary", { schema: { querystring: summaryQuery, response: { 200: summaryResponse } } }, async (req) => {
    await auditor(req, "reading the decision log");
    return summarize(logDir(), filterOf(req.query, now()));
  });

  app.get<{ Querystring: FilterQuery }>(
    "/v1/decisions/stream",
    // No HEAD twin: a HEAD would be answered by this handler too, and hold a feed subscription open until the token expires.
    { exposeHeadRoute: false, schema: { querystring: streamQuery, response: { 200: { content: { "text/event-stream": { schema: { type: "string" } } } } } } },
    async (req, reply) => {
      const p = await auditor(req, "following the decision log");
      const feed = deps.audit?.feed;
      if (!feed) throw new HttpProblem(503, errorType("no-decision-log"), "No live decision log", "this gateway was started without a decision log to follow");
      const filter = filterOf(req.query, now());
      const filtered = Object.values(filter).some((v) => v !== undefined);

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        // Proxies that buffer would hold events back.
        "x-accel-buffering": "no",
      });
      res.write(": ztgate decision log, live\nretry: 5000\n\n");
      streams.add(res);

      let ended = false;
      const end = (reason: string) => {
        if (ended) return;
        ended = true;
        if (!res.writableEnded && !res.destroyed) res.end(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
        cleanup();
      };
      const unsubscribe = feed.subscribe((r, line) => {
        if (filtered && !accepts(JSON.parse(line) as LogRecord, filter)) return;
        if (res.writableLength > STREAM_MAX_BUFFER) return end("slow-consumer");
        res.write(`id: ${r.seq}\nevent: record\ndata: ${line}\n\n`);
      });
      const heartbeat = setInterval(() => res.write(": ping\n\n"), HEARTBEAT_MS);
      heartbeat.unref();
      // Continuous verification (SPEC §3): the stream rests on the token and ends with it.
      const left = p.expiresAt !== undefined ? p.expiresAt - now() : undefined;
      const expiry = left !== undefined ? setTimeout(() => end("token-expired"), Math.max(0, Math.min(left, 2 ** 31 - 1))) : undefined;
      // ...and with its revocation: after each one the token is verified again (as a new
      // request's would be), and the stream ends if it no longer passes.
      const token = bearerToken(req);
      const unwatch = deps.sessions.onRevocation(() => {
        if (ended) return;
        void deps.verifier.verify(token, { via: "bearer" }).then(
          (v) => {
            if (!v.ok) end(v.reason);
          },
          () => end("token-invalid"),
        );
      });
      const cleanup = () => {
        unwatch();
        unsubscribe();
        clearInterval(heartbeat);
        clearTimeout(expiry);
        streams.delete(res);
      };
      res.on("close", () => {
        ended = true;
        cleanup();
      });
      log.info({ sub: p.sub, client: req.socket.remoteAddress }, "decision stream opened");
    },
  );
}
