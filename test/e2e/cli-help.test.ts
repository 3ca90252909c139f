// CLI polish (issue 7): --help on every command and subcommand, colour only on a terminal, the
// progress line only on a terminal.
import t from "tap";
import { PassThrough } from "node:stream";
import { main } from "../../src/cli/index.js";
import { colours, progressLine } from "../../src/cli/io.js";

const COMMANDS = [
  "start", "sim", "keys init", "cert issue", "token issue",
  "policy check", "policy explain", "policy test", "policy diff", "policy suggest",
  "log verify", "log query", "log tail", "report", "session list", "session revoke", "session keep",
];

async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

t.test("every command and subcommand answers --help and -h with its usage, exit 0", async (t) => {
  for (const c of COMMANDS) {
    for (const flag of ["--help", "-h"]) {
      const r = await run([...c.split(" "), flag]);
      t.equal(r.code, 0, `${c} ${flag} exits 0 ${r.err}`);
      t.match(r.out, new RegExp(`^usage: ztgate ${c} `.replace(/ $/, "( |$|\\n)")), `${c} ${flag} prints its usage`);
      t.equal(r.err, "");
    }
  }
});

t.test("--help wins over missing required options; the groups list their commands", async (t) => {
  const r = await run(["token", "issue", "--help"]);
  t.match(r.out, /--sub S +the subject \(required\)/);
  for (const g of ["policy", "log"]) {
    const h = await run([g, "--help"]);
    t.equal(h.code, 0);
    t.match(h.out, new RegExp(`^usage: ztgate ${g} COMMAND`));
  }
  const top = await run(["--help"]);
  t.match(top.out, /^usage: ztgate <command>\n/);
  t.match(top.out, /\n {2}sim \[--config F\]/);
});

t.test("a --help after -- is an argument, not a request for help", async (t) => {
  const r = await run(["token", "issue", "--", "--help"]);
  t.equal(r.code, 2, "a usage error: token issue takes no positional argument");
});

t.test("colour only on a terminal, and never with NO_COLOR", async (t) => {
  t.equal(colours({ isTTY: false }).red("DENY"), "DENY");
  t.equal(colours({}).green("ok"), "ok");
  const saved = process.env["NO_COLOR"];
  const term = process.env["TERM"];
  t.teardown(() => {
    if (saved === undefined) delete process.env["NO_COLOR"];
    else process.env["NO_COLOR"] = saved;
    if (term === undefined) delete process.env["TERM"];
    else process.env["TERM"] = term;
  });
  delete process.env["NO_COLOR"];
  process.env["TERM"] = "xterm";
  t.equal(colours({ isTTY: true }).red("DENY"), "\u001b[31mDENY\u001b[0m");
  process.env["NO_COLOR"] = "1";
  t.equal(colours({ isTTY: true }).red("DENY"), "DENY");
});

t.test("the progress line writes only to a terminal, and clears itself", async (t) => {
  const plain = new PassThrough() as unknown as NodeJS.WriteStream;
  let written = "";
  (plain as unknown as PassThrough).on("data", (d: Buffer) => (written += d.toString()));
  const p = progressLine(plain);
  p.update("replaying: 1,000 records");
  p.done();
  t.equal(written, "", "nothing on a pipe");

  const term = process.env["TERM"];
  t.teardown(() => {
    if (term === undefined) delete process.env["TERM"];
    else process.env["TERM"] = term;
  });
  process.env["TERM"] = "xterm";
  const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 20 }) as unknown as NodeJS.WriteStream;
  let shown = "";
  (tty as unknown as PassThrough).on("data", (d: Buffer) => (shown += d.toString()));
  const q = progressLine(tty);
  q.update("replaying: 1,000 records and more");
  q.done();
  t.equal(shown, "\rreplaying: 1,000 re\u001b[K\r\u001b[K", "one line, cut to the width, then cleared");
});
