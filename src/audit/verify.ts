// `ztgate log verify`: proves the log is what the gateway wrote, or names the first place it
// is not. What it can and cannot detect (README "Decision log" says the same):
//
// - any change to a record: its hash no longer recomputes (or, if the hash was recomputed,
//   the next record's prev no longer matches);
// - a removed, inserted, duplicated or reordered record, or a removed segment in the middle:
//   seq is not consecutive or prev does not link;
// - a whole chain rewritten with recomputed hashes: the first checkpoint's signature binds the
//   original hash of the record before it, and nobody without the key can sign the new one;
// - truncation of the tail back past the last checkpoint: head.jws signs {seq, hash} of the
//   last checkpointed record, so a log that ends before it (or differs at it) is caught.
//
// Not detectable: removing or rewriting records after the last checkpoint (at most
// `checkpointEvery` records or seconds) together with nothing else; replacing head.jws by an
// older genuine copy and truncating back to it; deleting the whole log, or whole leading
// segments together with head.jws. Shipping checkpoints off the box (syslog) closes these.
import type { KeyObject } from "node:crypto";
import path from "node:path";
import { openHead, readHeadFile } from "./checkpoint.js";
import type { SignedHead } from "./checkpoint.js";
import { GENESIS_PREV, LOG_FORMAT_VERSION, chainHash, jcs } from "./record.js";
import { HEAD_FILE, listSegments, listTorn, readLines } from "./segments.js";

export interface VerifyProblem {
  /** The segment file (or head.jws) where the log first stops being what was written. */
  readonly file: string;
  readonly seq: number;
  readonly why: string;
}

export interface VerifyResult {
  readonly ok: boolean;
  readonly problem: VerifyProblem | null;
  readonly segments: number;
  readonly records: number;
  readonly lastSeq: number;
  /** Checkpoint records whose signature verified. */
  readonly checkpoints: number;
  /** What head.jws signs, when present and valid. */
  readonly signedHead: SignedHead | null;
  /** Records after the last checkpoint: chained, but not yet covered by a signature. */
  readonly uncovered: number;
  /** Things worth knowing that are not damage: a torn last line, .torn files, a stale head. */
  readonly notes: readonly string[];
}

class Broken extends Error {
  constructor(readonly problem: VerifyProblem) {
    super(problem.why);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks the whole log in `dir` against the gateway's public key. */
export async function verifyLog(dir: string, publicKey: KeyObject): Promise<VerifyResult> {
  // head.jws first: a writer running meanwhile only ever adds records after what it signs.
  const notes: string[] = [];
  const headFile = path.join(dir, HEAD_FILE);
  const headJws = await readHeadFile(dir);
  const state = { records: 0, expect: 1, prev: GENESIS_PREV, checkpoints: 0, uncovered: 0, lastSigned: 0, segments: 0 };
  let signedHead: SignedHead | null = null;
  const result = (problem: VerifyProblem | null): VerifyResult => ({
    ok: problem === null,
    problem,
    segments: state.segments,
    records: state.records,
    lastSeq: state.expect - 1,
    checkpoints: state.checkpoints,
    signedHead,
    uncovered: state.uncovered,
    notes,
  });

  if (headJws !== null) {
    const h = await openHead(headJws, publicKey);
    if ("error" in h) return result({ file: headFile, seq: 0, why: `head.jws: ${h.error}` });
    signedHead = h;
  }
  const segments = await listSegments(dir);
  state.segments = segments.length;
  try {
    for (const [i, seg] of segments.entries()) {
      for await (const line of readLines(seg.path)) {
        if (!line.complete) {
          if (i === segments.length - 1) {
            notes.push(`${seg.path}: the last line (${Buffer.byteLength(line.text)} bytes) is incomplete: being written, or torn by a crash (the gateway moves it aside when it next opens the log)`);
            break;
          }
          throw new Broken({ file: seg.path, seq: state.expect, why: `line ${line.lineNo} has no newline, in the middle of the log` });
        }
        if (!line.utf8) throw new Broken({ file: seg.path, seq: state.expect, why: `line ${line.lineNo} is not valid UTF-8: its bytes were changed (the gateway writes UTF-8 only)` });
        await checkRecord(seg.path, line.lineNo, line.text, state, publicKey, signedHead, notes);
      }
    }
  } catch (e) {
    if (e instanceof Broken) return result(e.problem);
    throw e;
  }

  const lastSeq = state.expect - 1;
  const lastFile = segments.at(-1)?.path ?? path.join(dir, "(no segments)");
  if (signedHead && signedHead.seq > lastSeq) {
    return result({ file: lastFile, seq: lastSeq + 1, why: `the log ends at seq ${lastSeq} but head.jws signs seq ${signedHead.seq}: records ${lastSeq + 1}..${signedHead.seq} were removed from the tail` });
  }
  if (lastSeq > 0 && !signedHead) {
    const why = state.checkpoints > 0 ? "head.jws is missing although the log has checkpoints: the tail may have been cut" : "no signed checkpoint and no head.jws: nothing in this log is authenticated (the gateway checkpoints every log.checkpointEvery records or seconds, and when it starts and stops)";
    return result({ file: headFile, seq: lastSeq, why });
  }
  if (signedHead && state.lastSigned > signedHead.seq) notes.push(`head.jws signs seq ${signedHead.seq}, older than the last checkpoint (seq ${state.lastSigned}): the gateway stopped before updating it; it does so when it next opens the log`);
  if (state.uncovered > 0) notes.push(`${state.uncovered} records after seq ${state.lastSigned} are not yet covered by a checkpoint: removing them would not be detected`);
  for (const t of await listTorn(dir)) notes.push(`${path.join(dir, t)}: bytes of a torn tail moved aside after a crash`);
  return result(null);
}

type State = { records: number; expect: number; prev: string; checkpoints: number; uncovered: number; lastSigned: number };

async function checkRecord(file: string, lineNo: number, text: string, s: State, key: KeyObject, signedHead: SignedHead | null, notes: string[]): Promise<void> {
  const bad = (seq: number, why: string) => new Broken({ file, seq, why });
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    throw bad(s.expect, `line ${lineNo} is not JSON`);
  }
  if (!isRecord(r)) throw bad(s.expect, `line ${lineNo} is not a JSON object`);
  const seq = r["seq"];
  if (!Number.isSafeInteger(seq)) throw bad(s.expect, `line ${lineNo} has no integer seq`);
  if (r["v"] !== LOG_FORMAT_VERSION) throw bad(seq as number, `unknown format version ${JSON.stringify(r["v"])}`);
  if (seq !== s.expect) {
    throw bad(s.expect, `expected seq ${s.expect}, found seq ${String(seq)} on line ${lineNo}: record ${s.expect} was removed, moved or replaced`);
  }
  if (r["prev"] !== s.prev) {
    throw bad(s.expect, s.expect === 1 ? "the first record's prev is not 64 zeros: the log does not start at its beginning" : `prev does not match the hash of seq ${s.expect - 1}: a record before it was changed, removed or inserted`);
  }
  const { hash, ...rest } = r;
  const canonical = jcs(rest);
  if (chainHash(s.prev, canonical) !== hash) throw bad(s.expect, "hash does not match the record's content: the record was changed");
  // The line must be that very text, not another spelling of it (a duplicate key a reader may
  // take instead of the last one, another number or escape form): what is hashed is what is read.
  if (text !== `${canonical.slice(0, -1)},"hash":"${hash as string}"}`) {
    throw bad(s.expect, `line ${lineNo} is not the record's canonical JSON (RFC 8785) with its hash added last: its bytes were changed although it parses to the same record`);
  }
  if (signedHead && s.expect === signedHead.seq && r["hash"] !== signedHead.hash) {
    throw bad(s.expect, "hash differs from the one head.jws signs for this seq: the log was rewritten");
  }
  if (r["type"] === "checkpoint") await checkCheckpoint(r, s, key, notes, bad);
  else s.uncovered++;
  s.records++;
  s.prev = r["hash"] as string;
  s.expect++;
}

async function checkCheckpoint(r: Record<string, unknown>, s: State, key: KeyObject, notes: string[], bad: (seq: number, why: string) => Broken): Promise<void> {
  const head = r["head"];
  if (!isRecord(head) || head["seq"] !== s.expect - 1 || head["hash"] !== s.prev) {
    throw bad(s.expect, `checkpoint does not name the record before it (seq ${s.expect - 1}, hash ${s.prev.slice(0, 12)}…)`);
  }
  if (r["jws"] === null) {
    notes.push(`checkpoint at seq ${s.expect} carries no signature (signing failed when it was written)`);
    return;
  }
  const signed = await openHead(String(r["jws"]), key);
  if ("error" in signed) throw bad(s.expect, `checkpoint ${signed.error}`);
  if (signed.seq !== head["seq"] || signed.hash !== head["hash"]) {
    throw bad(s.expect, `checkpoint signs seq ${signed.seq} hash ${signed.hash.slice(0, 12)}… but the chain has hash ${s.prev.slice(0, 12)}… there: the records before it were rewritten`);
  }
  s.checkpoints++;
  s.uncovered = 0;
  s.lastSigned = signed.seq;
}
