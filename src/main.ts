// Composition root: load config, build the parts, start them in order, stop in reverse.
// Order: keys → policy → decision log → identity (verifier, revocations, sessions) →
// enforcement path → (fronts, as they land). Every policy change and session event is logged.
import { pino } from "pino";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config/schema.js";
import { PolicyStore } from "./policy/store.js";
import { displayPath } from "./policy/load.js";
import { initKeys } from "./auth/keys.js";
import { TokenVerifier } from "./auth/tokens.js";
import { RevocationList } from "./auth/revocation.js";
import { SessionRegistry } from "./auth/sessions.js";
import type { SessionInfo } from "./auth/sessions.js";
import { DecisionLog } from "./audit/writer.js";
import { readSigningKey } from "./audit/checkpoint.js";
import type { RecordBody, SessionBody } from "./audit/record.js";
import { Enforcer } from "./pep/enforce.js";
import { TokenBucketRates } from "./pdp/conditions/rate.js";

export interface Gateway {
  readonly config: GatewayConfig;
  readonly policy: PolicyStore;
  readonly log: DecisionLog;
  readonly verifier: TokenVerifier;
  readonly revocations: RevocationList;
  readonly sessions: SessionRegistry;
  readonly enforcer: Enforcer;
  stop(): Promise<void>;
}

export function createLogger(): Logger {
  return pino({ name: "ztgate", level: process.env["ZTGATE_LOG_LEVEL"] ?? "info" });
}

function subjectOfSession(s: SessionInfo): SessionBody["subject"] {
  return { sub: s.sub, iss: s.iss, roles: [...s.roles], sessionId: s.id, ...(s.jti !== undefined && { jti: s.jti }) };
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<Gateway> {
  const stops: Array<() => Promise<void> | void> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
  };
  try {
    const keys = await initKeys(config.keys.dir);
    const created = keys.files.filter((f) => f.status === "created").map((f) => f.file);
    if (created.length > 0) log.info({ dir: displayPath(config.keys.dir), created }, "development keys created (first start)");

    const policy = await PolicyStore.open(config.policy.dir, { watch: config.policy.watch, debounceMs: config.policy.debounceMs });
    stops.push(() => policy.close());

    const decisions = await DecisionLog.open(config.log, { signingKey: await readSigningKey(config.log.keyFile) });
    stops.push(() => decisions.close());
    if (decisions.recovered.torn) log.warn({ torn: decisions.recovered.torn }, "decision log: a torn last line was moved aside; the chain resumes from the last whole record");
    decisions.on("unavailable", (e) => log.error({ err: e.message }, "decision log cannot be written: operations are denied (audit-unavailable)"));
    decisions.on("available", () => log.info("decision log writable again"));
    const audit = (body: RecordBody) => {
      try {
        decisions.append(body).durable.catch(() => undefined);
      } catch (e) {
        log.error({ err: (e as Error).message, record: body.type }, "decision log refused a record");
      }
    };

    const set = policy.current();
    log.info({ revision: set.revision, dir: displayPath(config.policy.dir), assets: [...set.assets.keys()] }, "policy loaded");
    audit({ type: "policy", event: "loaded", revision: set.revision, files: set.files.length });
    policy.on("reloaded", (r) => {
      log.info({ revision: r.revision, previousRevision: r.previousRevision, trigger: r.trigger }, "policy reloaded");
      audit({ type: "policy", event: "loaded", revision: r.revision, files: policy.current().files.length });
    });
    policy.on("rejected", (r) => {
      log.warn({ revision: r.revision, trigger: r.trigger, errors: r.errors }, "policy change rejected; previous policy stays in force");
      audit({ type: "policy", event: "rejected", revision: r.revision, errors: r.errors });
    });
    const onHup = () => void policy.reload("sighup");
    process.on("SIGHUP", onHup);
    stops.push(() => void process.off("SIGHUP", onHup));

    const revocations = new RevocationList();
    const verifier = await TokenVerifier.fromConfig(config.issuers, { revocations });
    stops.push(() => verifier.close());
    const sessions = new SessionRegistry({ revocations, onListenerError: (e) => log.error({ err: String(e) }, "session end listener failed") });
    stops.push(() => sessions.stop());
    sessions.on("opened", (e) => audit({ type: "session", event: "opened", session: e.session.id, subject: subjectOfSession(e.session), ...(e.replaces !== undefined && { detail: `replaces ${e.replaces}` }) }));
    sessions.on("renewed", (e) => audit({ type: "session", event: "renewed", session: e.session.id, subject: subjectOfSession(e.session) }));
    sessions.on("ended", (e) => {
      const event = e.why === "expired" ? "expired" : e.why === "replaced" ? "replaced" : e.why === "closed" ? "closed" : "revoked";
      audit({ type: "session", event, session: e.session.id, subject: subjectOfSession(e.session), detail: e.detail });
    });

    const enforcer = new Enforcer({ policy: () => policy.current(), log: decisions, rates: new TokenBucketRates() });
    return { config, policy, log: decisions, verifier, revocations, sessions, enforcer, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
