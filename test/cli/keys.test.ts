// `ztgate keys init` in-process: what it prints, that it is idempotent, and its usage errors.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { main } from "../../src/cli/index.js";

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(...l.split("\n")), err: (l) => err.push(...l.split("\n")) });
  return { code, out, err };
}

t.test("keys init creates, then keeps; --force replaces", async (t) => {
  const dir = join(t.testdir({}), "certs");
  const first = await run("keys", "init", "--dir", dir);
  t.equal(first.code, 0);
  t.same(first.err, []);
  t.match(first.out, [/^created +\S*ca\.key\.pem$/, /^created +\S*ca\.pem$/]);
  t.match(first.out.at(-1), /^10 files written in \S+certs; private keys are mode 0600$/);
  t.equal((await stat(join(dir, "issuer.key.pem"))).mode & 0o777, 0o600);

  const again = await run("keys", "init", "--dir", dir);
  t.equal(again.code, 0);
  t.ok(again.out.slice(0, -1).every((l) => l.startsWith("kept ")));
  t.match(again.out.at(-1), /^nothing to do: every key in \S+ exists \(--force recreates them all\)$/);

  const forced = await run("keys", "init", "--dir", dir, "--force");
  t.ok(forced.out.slice(0, -1).every((l) => l.startsWith("replaced ")));
});

t.test("usage errors exit 2 with one line", async (t) => {
  for (const [argv, message] of [
    [["keys"], /^ztgate: no keys command given; usage: ztgate keys init/],
    [["keys", "make"], /^ztgate: unknown keys command "make"/],
    [["keys", "init", "extra"], /^ztgate: unexpected argument "extra"/],
    [["keys", "init", "--bits", "4096"], /^ztgate: Unknown option '--bits'/],
  ] as const) {
    const r = await run(...argv);
    t.equal(r.code, 2, argv.join(" "));
    t.equal(r.err.length, 1);
    t.match(r.err[0], message);
  }
});
