// `ztgate cert issue --cn NAME [--role R] [--opcua --app-uri URI] [--out DIR] [--days N]`:
// a client certificate from the dev CA (SPEC §2).
import path from "node:path";
import { stat } from "node:fs/promises";
import { UsageError, ZtError } from "../errors.js";
import { issueClientCertificate } from "../auth/certs.js";
import { privateKeyPem, readCa, writeKeyFile } from "../auth/keys.js";
import { certificateThumbprint } from "../auth/x509.js";
import { displayPath } from "../policy/load.js";
import { keysDir } from "./keys.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

const USAGE = "ztgate cert issue --cn NAME [--role R] [--opcua --app-uri URI] [--out DIR] [--days N] [--dir DIR] [--force]";

export async function certCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "issue") throw new UsageError(`${sub === undefined ? "no cert command given" : `unknown cert command "${sub}"`}; usage: ${USAGE}`);
  const { values: v } = parse(
    rest,
    {
      cn: { type: "string" },
      role: { type: "string", multiple: true },
      opcua: { type: "boolean" },
      "app-uri": { type: "string" },
      out: { type: "string" },
      days: { type: "string", default: "365" },
      dir: { type: "string" },
      force: { type: "boolean" },
    },
    USAGE,
  );
  if (v.cn === undefined || v.cn === "") throw new UsageError(`--cn is required; usage: ${USAGE}`);
  const roles = v.role ?? [];
  if (roles.length > 1) throw new UsageError("give at most one --role: a Modbus/TCP Security certificate carries exactly one role");
  if (roles[0] === "") throw new UsageError("--role must not be empty");
  if (v.opcua === true && v["app-uri"] === undefined) throw new UsageError(`--opcua needs --app-uri URI (the client's ApplicationUri); usage: ${USAGE}`);
  if (v["app-uri"] !== undefined && v.opcua !== true) throw new UsageError("--app-uri is for --opcua application certificates");
  if (v["app-uri"] !== undefined && !/^[a-z][a-z0-9+.-]*:\S+$/i.test(v["app-uri"])) throw new UsageError(`--app-uri "${v["app-uri"]}": must be a URI (urn:host:app)`);
  const days = Number(v.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError(`--days "${v.days}": must be a whole number of days, 1 to 3650`);

  const dir = await keysDir(v.dir);
  const out = v.out !== undefined ? path.resolve(v.out) : path.join(dir, "clients");
  // The CN names the files; anything but a plain name is replaced so it cannot leave `out`.
  const base = v.cn.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  const certFile = path.join(out, `${base}.pem`);
  const keyFile = path.join(out, `${base}.key.pem`);
  if (v.force !== true) {
    for (const f of [certFile, keyFile]) {
      if (await stat(f).then(() => true, () => false)) throw new ZtError("ZT_KEYS_INVALID", `${f}: exists; use --force to replace it or --out for another directory`);
    }
  }

  const ca = await readCa(dir);
  const issued = await issueClientCertificate(ca, {
    cn: v.cn,
    days,
    ...(roles[0] !== undefined ? { role: roles[0] } : {}),
    ...(v["app-uri"] !== undefined ? { opcuaAppUri: v["app-uri"] } : {}),
  });
  await writeKeyFile(keyFile, await privateKeyPem(issued.keys), 0o600);
  await writeKeyFile(certFile, issued.cert.toString("pem") + "\n", 0o644);
  io.out(`certificate ${displayPath(certFile)}`);
  io.out(`key         ${displayPath(keyFile)} (mode 0600)`);
  io.out(`x5t#S256    ${certificateThumbprint(new Uint8Array(issued.cert.rawData))}`);
  io.out(`subject     ${issued.cert.subject}${roles[0] !== undefined ? `; role ${roles[0]}` : ""}${v["app-uri"] !== undefined ? `; application URI ${v["app-uri"]}` : ""}; valid until ${issued.cert.notAfter.toISOString()}`);
  return 0;
}
