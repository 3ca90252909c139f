// TokenVerifier against real keys and real JWTs: the refusals of SPEC §9 each with its reason
// and detail, the certificate binding, the cache and revocation. Time is a fixed clock.
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import type { CryptoKey as JoseKey, JWTPayload } from "jose";
import t from "tap";
import type { IssuerSettings } from "../../src/config/schema.js";
import { RevocationList } from "../../src/auth/revocation.js";
import { rolesAt, TokenVerifier } from "../../src/auth/tokens.js";
import type { VerifyResult } from "../../src/auth/tokens.js";

const NOW = new Date("2026-03-02T08:00:00Z");
const now = Math.floor(NOW.getTime() / 1000);
const clock = () => NOW;

const ed = await generateKeyPair("EdDSA", { extractable: true });
const foreign = await generateKeyPair("EdDSA", { extractable: true });
const es = await generateKeyPair("ES256", { extractable: true });
const foreignEs = await generateKeyPair("ES256");
const rsa = await generateKeyPair("RS256", { extractable: true });
const edPem = await exportSPKI(ed.publicKey);

const dir = t.testdir({
  "issuer.pub.pem": edPem,
  "jwks.json": JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: "k1", alg: "ES256", use: "sig" }] }),
});

const base = { audience: "ztgate", algorithms: ["EdDSA", "ES256", "RS256"], clockTolerance: 30, rolesClaim: "roles" } as const;
const PEM_ISSUER: IssuerSettings = { ...base, issuer: "ztgate-dev", publicKey: join(dir, "issuer.pub.pem"), algorithms: [...base.algorithms] };
const JWKS_ISSUER: IssuerSettings = { ...base, issuer: "https://idp.example/realms/plant", jwks: join(dir, "jwks.json"), algorithms: [...base.algorithms], rolesClaim: "realm_access.roles" };

const verifier = await TokenVerifier.fromConfig([PEM_ISSUER, JWKS_ISSUER], { currentDate: clock });

/** A token of the PEM issuer, signed with `key` (default: the issuer's), `claims` over sane defaults. */
function token(claims: JWTPayload = {}, o: { key?: JoseKey | Uint8Array; alg?: string; kid?: string; drop?: string[] } = {}): Promise<string> {
  const payload: JWTPayload = { iss: "ztgate-dev", sub: "hist-1", aud: "ztgate", iat: now - 10, exp: now + 900, jti: "j-1", roles: ["historian"], ...claims };
  for (const k of o.drop ?? []) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: o.alg ?? "EdDSA", ...(o.kid ? { kid: o.kid } : {}) }).sign(o.key ?? ed.privateKey);
}

const jwksToken = (claims: JWTPayload = {}, o: { key?: JoseKey; kid?: string } = {}) =>
  token({ iss: JWKS_ISSUER.issuer, roles: undefined, realm_access: { roles: ["mes"] }, ...claims }, { key: o.key ?? es.privateKey, alg: "ES256", kid: o.kid ?? "k1" });

/** Replaces the payload segment, keeping header and signature: what an attacker editing claims sends. */
async function tampered(): Promise<string> {
  const [h, , s] = (await token()).split(".");
  const evil = Buffer.from(JSON.stringify({ iss: "ztgate-dev", sub: "hist-1", aud: "ztgate", exp: now + 900, roles: ["admin"] })).toString("base64url");
  return `${h}.${evil}.${s}`;
}

const refused = (reason: string, detail: RegExp) => ({ ok: false, reason, detail });

t.test("the token table: each bad token refused with its reason and detail, none throwing", async (t) => {
  const cases: Array<[string, () => Promise<unknown>, object]> = [
    ["valid", () => token(), { ok: true, principal: { sub: "hist-1", iss: "ztgate-dev", roles: ["historian"], tokenId: "j-1", expiresAt: (now + 900) * 1000, via: "bearer" } }],
    ["alg none", async () => new UnsecuredJWT({ iss: "ztgate-dev", sub: "hist-1", aud: "ztgate", exp: now + 900, roles: ["admin"] }).encode(), refused("token-invalid", /algorithm "none" is not allowed/)],
    ["HS256 signed with the issuer's public key (key confusion)", () => token({}, { alg: "HS256", key: new TextEncoder().encode(edPem) }), refused("token-invalid", /algorithm "HS256" is not allowed/)],
    ["RS256 (allowed) signed with a key of the wrong type", () => token({}, { alg: "RS256", key: rsa.privateKey }), refused("token-invalid", /token rejected/)],
    ["expired", () => token({ exp: now - 31 }), refused("token-expired", /expired \(exp\)/)],
    ["expired but within the clock tolerance", () => token({ exp: now - 29 }), { ok: true }],
    ["not yet valid", () => token({ nbf: now + 31 }), refused("token-invalid", /not yet valid \(nbf\)/)],
    ["wrong aud", () => token({ aud: "someone-else" }), refused("token-invalid", /"aud" claim/)],
    ["wrong iss", () => token({ iss: "evil" }), refused("token-invalid", /unknown issuer "evil"/)],
    ["no iss", () => token({}, { drop: ["iss"] }), refused("token-invalid", /unknown issuer null/)],
    ["no exp", () => token({}, { drop: ["exp"] }), refused("token-invalid", /missing required "exp" claim/)],
    ["no sub", () => token({}, { drop: ["sub"] }), refused("token-invalid", /missing required "sub" claim/)],
    ["no aud", () => token({}, { drop: ["aud"] }), refused("token-invalid", /missing required "aud" claim/)],
    ["exp not a number", () => token({ exp: "tomorrow" as unknown as number }), refused("token-invalid", /"exp" claim must be a number/)],
    ["roles not strings", () => token({ roles: [1, 2] }), refused("token-invalid", /"roles" claim must be a string or a list of strings/)],
    ["unknown kid (JWKS)", () => jwksToken({}, { kid: "k9" }), refused("token-invalid", /no key of the issuer matches the token's kid/)],
    ["foreign key with the right kid (JWKS)", () => jwksToken({}, { key: foreignEs.privateKey }), refused("token-invalid", /signature verification failed/)],
    ["tampered payload", tampered, refused("token-invalid", /signature verification failed/)],
    ["signed by a foreign key (PEM issuer)", () => token({}, { key: foreign.privateKey }), refused("token-invalid", /signature verification failed/)],
    ["a 100 KB token", () => token({ pad: "x".repeat(100_000) }), refused("token-invalid", /token is \d+ bytes, more than the 8192 accepted/)],
    ["empty", async () => "", refused("token-invalid", /no token/)],
    ["not a string", async () => 42, refused("token-invalid", /no token/)],
    ["not a JWT", async () => "not-a-jwt", refused("token-invalid", /malformed token/)],
    ["three dots of nothing", async () => "..", refused("token-invalid", /malformed token/)],
    ["payload not JSON", async () => `${Buffer.from('{"alg":"EdDSA"}').toString("base64url")}.${Buffer.from("{nope").toString("base64url")}.sig`, refused("token-invalid", /malformed token/)],
    ["unsupported cnf method", () => token({ cnf: { jkt: "abc" } }), refused("token-invalid", /unsupported "cnf" claim/)],
  ];
  for (const [name, make, expected] of cases) {
    let r: VerifyResult | undefined;
    await t.resolves(async () => {
      r = await verifier.verify(await make());
    }, `${name}: does not throw`);
    t.match(r, expected, name);
  }
});

t.test("JWKS issuer: roles from a dotted claim path", async (t) => {
  const r = await verifier.verify(await jwksToken());
  t.match(r, { ok: true, principal: { iss: JWKS_ISSUER.issuer, roles: ["mes"] } });
});

t.test("rolesAt: missing is none, a string is one, own properties only", async (t) => {
  t.same(rolesAt({ roles: ["a", "b"] }, "roles"), ["a", "b"]);
  t.same(rolesAt({ roles: "a" }, "roles"), ["a"]);
  t.same(rolesAt({}, "roles"), []);
  t.same(rolesAt({ realm_access: { roles: ["x"] } }, "realm_access.roles"), ["x"]);
  t.same(rolesAt({ realm_access: "x" }, "realm_access.roles"), []);
  t.same(rolesAt({}, "constructor.name"), [], "no prototype walk");
  t.equal(rolesAt({ roles: { a: 1 } }, "roles"), undefined);
});

t.test("RFC 8705: a bound token is accepted only on the certificate it names", async (t) => {
  const bound = await token({ cnf: { "x5t#S256": "right-thumbprint" } });
  t.match(await verifier.verify(bound, { certThumbprint: "right-thumbprint", via: "mtls" }), { ok: true, principal: { via: "mtls" } });
  t.match(await verifier.verify(bound, { certThumbprint: "wrong-thumbprint" }), refused("token-invalid", /bound to a different client certificate/));
  t.match(await verifier.verify(bound), refused("token-invalid", /bound to a client certificate .* presented none/));
  // From the cache too: the binding is checked on every use.
  t.match(await verifier.verify(bound, { certThumbprint: "wrong-thumbprint" }), { ok: false });
  t.match(await verifier.verify(await token()), { ok: true }, "an unbound token needs no certificate");
});

t.test("the cache never outlives exp", async (t) => {
  let at = NOW;
  const strict: IssuerSettings = { ...PEM_ISSUER, clockTolerance: 0 };
  const v = await TokenVerifier.fromConfig([strict], { currentDate: () => at });
  const tok = await token({ exp: now + 60 });
  t.match(await v.verify(tok), { ok: true });
  t.equal(v.cached, 1);
  at = new Date((now + 59) * 1000);
  t.match(await v.verify(tok), { ok: true }, "cached and still valid");
  at = new Date((now + 60) * 1000);
  t.match(await v.verify(tok), refused("token-expired", /expired/), "refused at exp, cached or not");
  t.equal(v.cached, 0, "the entry is gone");
});

t.test("a token within the tolerance after exp is verified again, not served from the cache", async (t) => {
  let at = NOW;
  const v = await TokenVerifier.fromConfig([PEM_ISSUER], { currentDate: () => at });
  const tok = await token({ exp: now + 60 });
  await v.verify(tok);
  at = new Date((now + 70) * 1000);
  t.match(await v.verify(tok), { ok: true }, "jose accepts it within clockTolerance");
  t.equal(v.cached, 0, "but it is not cached past exp");
});

t.test("revocation: a cached token is refused and dropped", async (t) => {
  const revocations = new RevocationList({ now: () => NOW.getTime() });
  const v = await TokenVerifier.fromConfig([PEM_ISSUER], { currentDate: clock, revocations });
  const a = await token({ jti: "a" });
  const b = await token({ jti: "b", sub: "mes-1" });
  t.match(await v.verify(a), { ok: true });
  t.match(await v.verify(b), { ok: true });
  t.equal(v.cached, 2);

  revocations.revokeJti("a", (now + 900) * 1000);
  t.equal(v.cached, 1, "dropped from the cache on revocation");
  t.match(await v.verify(a), refused("token-revoked", /token a was revoked/));
  t.equal(v.cached, 1, "and not cached again (only b is)");

  revocations.revokeSub("mes-1");
  t.match(await v.verify(b), refused("token-revoked", /tokens of mes-1 issued before/));
  const later = await token({ jti: "c", sub: "mes-1", iat: now + 1 });
  t.match(await v.verify(later), { ok: true }, "a token issued after the revocation is accepted");

  v.close();
  t.equal(v.cached, 0);
  t.equal(revocations.listenerCount("revoked"), 0, "a closed verifier no longer listens");
});

t.test("the size limit is configurable and checked before decoding", async (t) => {
  const v = await TokenVerifier.fromConfig([PEM_ISSUER], { currentDate: clock, maxTokenBytes: 64, cacheMax: 0 });
  t.match(await v.verify(await token()), refused("token-invalid", /more than the 64 accepted/));
  t.equal(v.cached, 0);
});

t.test("JWKS URL: keys fetched over HTTP; an unreachable set refuses, never throws", async (t) => {
  let fetches = 0;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: "k1", alg: "ES256" }] });
  const server = createServer((_req, res) => {
    fetches++;
    res.setHeader("content-type", "application/json");
    res.end(jwks);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  const remote: IssuerSettings = { ...JWKS_ISSUER, jwks: undefined, jwksUrl: url };
  delete (remote as { jwks?: string }).jwks;
  const v = await TokenVerifier.fromConfig([remote], { currentDate: clock, cacheMax: 0 });
  t.match(await v.verify(await jwksToken()), { ok: true, principal: { roles: ["mes"] } });
  t.match(await v.verify(await jwksToken({ jti: "other" })), { ok: true });
  t.equal(fetches, 1, "the key set is cached by jose");

  const down: IssuerSettings = { ...remote, jwksUrl: "http://127.0.0.1:1/jwks" };
  const v2 = await TokenVerifier.fromConfig([down], { currentDate: clock });
  t.match(await v2.verify(await jwksToken()), refused("token-invalid", /key set http:\/\/127\.0\.0\.1:1\/jwks could not be fetched/));
});

t.test("key files are checked at start: a missing or wrong one is ZT_KEYS_INVALID", async (t) => {
  const d = t.testdir({ "not-a-key.pem": "hello", "bad.json": "{" });
  await t.rejects(TokenVerifier.fromConfig([{ ...PEM_ISSUER, publicKey: join(d, "nope.pem") }]), { code: "ZT_KEYS_INVALID", message: /nope\.pem: issuer ztgate-dev: cannot read the public key .*keys init/ });
  await t.rejects(TokenVerifier.fromConfig([{ ...PEM_ISSUER, publicKey: join(d, "not-a-key.pem") }]), { code: "ZT_KEYS_INVALID", message: /not an SPKI public key/ });
  await t.rejects(TokenVerifier.fromConfig([{ ...JWKS_ISSUER, jwks: join(d, "bad.json") }]), { code: "ZT_KEYS_INVALID", message: /bad\.json: .*not a readable JWKS/ });
});
