// Keys for checkpoints: read from PEM files as `keys init` writes them, checked to be Ed25519,
// and a signed head that only opens with the right key.
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { keyId, openHead, prepareSigningKey, readSigningKey, readVerifyKey, signHead } from "../../src/audit/checkpoint.js";
import { keys } from "./helpers.js";

t.test("PEM files: the private key signs, its public half (or the private PEM) verifies", async (t) => {
  const k = await keys();
  const dir = t.testdir({});
  const priv = path.join(dir, "gateway-signing.key.pem");
  const pub = path.join(dir, "gateway-signing.pub.pem");
  writeFileSync(priv, k.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(pub, k.publicKey.export({ type: "spki", format: "pem" }));
  const signing = await readSigningKey(priv);
  const { key, kid } = await prepareSigningKey(signing);
  t.equal(kid, await keyId(k.publicKey));
  const jws = await signHead(key, kid, { seq: 7, hash: "ab".repeat(32) });
  t.same(await openHead(jws, await readVerifyKey(pub)), { seq: 7, hash: "ab".repeat(32) });
  t.same(await openHead(jws, await readVerifyKey(priv)), { seq: 7, hash: "ab".repeat(32) });
  t.match(await openHead(jws, (await keys()).publicKey), { error: /signature does not verify/ });
  t.match(await openHead("not.a.jws", k.publicKey), { error: /signature does not verify/ });
});

t.test("wrong or missing keys are named with their file", async (t) => {
  const dir = t.testdir({});
  const rsa = path.join(dir, "rsa.pem");
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  writeFileSync(rsa, privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(path.join(dir, "junk.pem"), "hello");
  await t.rejects(readSigningKey(path.join(dir, "none.pem")), { code: "ZT_LOG_KEY_INVALID", message: /none\.pem: cannot read key/ });
  await t.rejects(readSigningKey(path.join(dir, "junk.pem")), { code: "ZT_LOG_KEY_INVALID", message: /junk\.pem: not a private key PEM/ });
  await t.rejects(readSigningKey(rsa), { code: "ZT_LOG_KEY_INVALID", message: /an Ed25519 key is needed, this is rsa/ });
  await t.rejects(readVerifyKey(rsa), { code: "ZT_LOG_KEY_INVALID", message: /this is rsa/ });
  await t.rejects(prepareSigningKey(privateKey), { code: "ZT_LOG_KEY_INVALID", message: /must be an Ed25519 private key/ });
});
