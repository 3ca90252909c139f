// The README documents every error code and every reason code, and nothing else.
import t from "tap";
import { readFile } from "node:fs/promises";
import { ERROR_CODES, UsageError, ZtError } from "../src/errors.js";
import { REASONS, CONDITION_REASONS } from "../src/pdp/reasons.js";

const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");

function tableCodes(heading: string): string[] {
  const section = readme.split(/^## /m).find((s) => s.startsWith(heading)) ?? "";
  return [...section.matchAll(/^\| `([a-zA-Z_-]+)` \|/gm)].map((m) => m[1] as string);
}

t.test("README lists exactly the error codes of the registry", async (t) => {
  t.same(tableCodes("Error codes").sort(), Object.keys(ERROR_CODES).sort());
});

t.test("README lists exactly the reason codes, in the registry's order", async (t) => {
  t.same(tableCodes("Reason codes"), Object.keys(REASONS));
});

t.test("condition reasons are reasons", async (t) => {
  for (const r of CONDITION_REASONS) t.ok(r in REASONS, r);
});

t.test("errors carry their code and positioned diagnostics", async (t) => {
  const e = new ZtError("ZT_POLICY_INVALID", "policies: 1 policy error", [{ file: "a.yaml", line: 3, col: 5, message: "bad" }]);
  t.ok(e instanceof Error);
  t.equal(e.describe(), "policies: 1 policy error\na.yaml:3:5: bad");
  const u = new UsageError("no command");
  t.equal(u.code, "ZT_USAGE");
  t.equal(u.describe(), "no command");
});
