// `ztgate token issue`: its output verifies against the default issuer configuration.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import t from "tap";
import { initKeys } from "../../src/auth/keys.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import { main } from "../../src/cli/index.js";
import { loadConfig } from "../../src/config/load.js";

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(...l.split("\n")), err: (l) => err.push(...l.split("\n")) });
  return { code, out, err };
}

// A gateway.yaml with every default, beside the certs/ its default issuer points at.
const root = t.testdir({ "gateway.yaml": "# all defaults\n" });
const certs = join(root, "certs");
await initKeys(certs);
const config = await loadConfig(join(root, "gateway.yaml"));
const verifier = await TokenVerifier.fromConfig(config.issuers);

t.test("the printed token verifies with the default issuer config", async (t) => {
  const r = await run("token", "issue", "--sub", "mes-1", "--role", "mes", "--role", "historian", "--claim", "site=north", "--claim", "line=2", "--ttl", "5m", "--dir", certs);
  t.equal(r.code, 0);
  t.same(r.err, []);
  t.equal(r.out.length, 1, "only the token, so TOKEN=$(…) works");
  const jwt = r.out[0] as string;
  t.match(decodeProtectedHeader(jwt), { alg: "EdDSA", typ: "JWT" });
  const claims = decodeJwt(jwt);
  t.match(claims, { iss: "ztgate-dev", aud: "ztgate", sub: "mes-1", roles: ["mes", "historian"], site: "north", line: 2 });
  t.equal((claims.exp as number) - (claims.iat as number), 300);
  t.match(claims.jti, /^[0-9a-f-]{36}$/);
  t.match(await verifier.verify(jwt), { ok: true, principal: { sub: "mes-1", iss: "ztgate-dev", roles: ["mes", "historian"], claims: { site: "north" } } });
});

t.test("--aud and --bind-cert", async (t) => {
  const other = await run("token", "issue", "--sub", "x", "--aud", "elsewhere", "--dir", certs);
  t.match(await verifier.verify(other.out[0]), { ok: false, reason: "token-invalid", detail: /"aud"/ });

  const cert = await run("cert", "issue", "--cn", "bound", "--dir", certs);
  const file = join(certs, "clients", "bound.pem");
  const thumb = /^x5t#S256 +(\S+)$/m.exec(cert.out.join("\n"))?.[1];
  const bound = await run("token", "issue", "--sub", "x", "--bind-cert", file, "--dir", certs);
  t.match(decodeJwt(bound.out[0] as string), { cnf: { "x5t#S256": thumb } });
  t.match(await verifier.verify(bound.out[0], { certThumbprint: thumb as string }), { ok: true });
  t.match(await verifier.verify(bound.out[0]), { ok: false });

  await writeFile(join(root, "junk.pem"), "junk");
  const bad = await run("token", "issue", "--sub", "x", "--bind-cert", join(root, "junk.pem"), "--dir", certs);
  t.equal(bad.code, 1);
  t.match(bad.err[0], /^ztgate: ZT_KEYS_INVALID: --bind-cert \S+junk\.pem: not a readable PEM certificate/);
});

t.test("errors: usage (exit 2) and a missing key (exit 1)", async (t) => {
  for (const [argv, message] of [
    [["token"], /^ztgate: no token command given/],
    [["token", "issue"], /^ztgate: --sub is required/],
    [["token", "issue", "--sub", "x", "--ttl", "15"], /^ztgate: --ttl "15": must be a positive number with s, m, h or d/],
    [["token", "issue", "--sub", "x", "--ttl", "0m"], /^ztgate: --ttl "0m"/],
    [["token", "issue", "--sub", "x", "--claim", "exp=1"], /^ztgate: --claim "exp=1": exp is set by its own option or by the issuer$/],
    [["token", "issue", "--sub", "x", "--claim", "roles=admin"], /^ztgate: --claim "roles=admin"/],
    [["token", "issue", "--sub", "x", "--claim", "site"], /^ztgate: --claim "site": must be key=value$/],
  ] as const) {
    const r = await run(...argv, ...(argv.length > 1 ? ["--dir", certs] : []));
    t.equal(r.code, 2, argv.join(" "));
    t.equal(r.err.length, 1);
    t.match(r.err[0], message);
  }
  const missing = await run("token", "issue", "--sub", "x", "--dir", join(root, "nowhere"));
  t.equal(missing.code, 1);
  t.match(missing.err[0], /^ztgate: ZT_KEYS_INVALID: \S+issuer\.key\.pem: cannot read \(run "ztgate keys init"/);
});
