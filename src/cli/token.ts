// `ztgate token issue …`: prints a development JWT signed with the dev issuer key (SPEC §2).
import path from "node:path";
import { readFile } from "node:fs/promises";
import { UsageError, ZtError } from "../errors.js";
import { issueToken, parseDuration, RESERVED_CLAIMS } from "../auth/issue.js";
import { KEY_FILES, readPrivateKey } from "../auth/keys.js";
import { certificateThumbprint, x509 } from "../auth/x509.js";
import { parseScalar } from "../policy/request.js";
import { keysDir } from "./keys.js";
import type { Io } from "./io.js";
import { parse } from "./io.js";

const USAGE = "ztgate token issue --sub S [--role R]… [--ttl 15m] [--claim k=v]… [--aud A] [--bind-cert FILE] [--dir DIR]";

export async function tokenCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "issue") throw new UsageError(`${sub === undefined ? "no token command given" : `unknown token command "${sub}"`}; usage: ${USAGE}`);
  const { values } = parse(
    rest,
    {
      sub: { type: "string" },
      role: { type: "string", multiple: true },
      ttl: { type: "string", default: "15m" },
      claim: { type: "string", multiple: true },
      aud: { type: "string" },
      "bind-cert": { type: "string" },
      dir: { type: "string" },
    },
    USAGE,
  );
  if (values.sub === undefined || values.sub === "") throw new UsageError(`--sub is required; usage: ${USAGE}`);
  const ttl = parseDuration(values.ttl);
  if (ttl === undefined) throw new UsageError(`--ttl "${values.ttl}": must be a positive number with s, m, h or d (15m, 8h)`);
  const claims: Record<string, unknown> = {};
  for (const c of values.claim ?? []) {
    const i = c.indexOf("=");
    if (i <= 0) throw new UsageError(`--claim "${c}": must be key=value`);
    const key = c.slice(0, i);
    if ((RESERVED_CLAIMS as readonly string[]).includes(key) || key === "roles") throw new UsageError(`--claim "${c}": ${key} is set by its own option or by the issuer`);
    claims[key] = parseScalar(c.slice(i + 1));
  }
  const dir = await keysDir(values.dir);
  const key = await readPrivateKey(path.join(dir, KEY_FILES.issuerKey));
  const token = await issueToken({
    key,
    sub: values.sub,
    roles: values.role ?? [],
    ttl,
    claims,
    ...(values.aud !== undefined ? { audience: values.aud } : {}),
    ...(values["bind-cert"] !== undefined ? { certThumbprint: await thumbprintOf(values["bind-cert"]) } : {}),
  });
  io.out(token);
  return 0;
}

async function thumbprintOf(file: string): Promise<string> {
  try {
    const cert = new x509.X509Certificate(await readFile(file, "utf8"));
    return certificateThumbprint(new Uint8Array(cert.rawData));
  } catch (e) {
    throw new ZtError("ZT_KEYS_INVALID", `--bind-cert ${file}: not a readable PEM certificate (${(e as Error).message})`);
  }
}
