import t from "tap";
import { YamlSource, formatDiagnostic, pathLabel } from "../../src/util/yaml-source.js";

t.test("syntax errors are positioned", async (t) => {
  const r = YamlSource.parse("f.yaml", "a: 1\nb: [1, 2\nc: 3\n");
  t.equal(r.source, undefined);
  t.ok(r.diagnostics.length >= 1);
  t.match(formatDiagnostic(r.diagnostics[0]!), /^f\.yaml:\d+:\d+: YAML /);
});

t.test("duplicate keys are errors", async (t) => {
  const r = YamlSource.parse("f.yaml", "a: 1\na: 2\n");
  t.equal(r.diagnostics.length, 1);
  t.equal(r.diagnostics[0]!.line, 2);
});

t.test("positions of nested values and keys", async (t) => {
  const r = YamlSource.parse("f.yaml", "top:\n  list:\n    - x: 1\n      y: 2\n");
  const s = r.source!;
  t.same(s.position(["top", "list", 0, "y"]), { line: 4, col: 10 });
  t.same(s.position(["top", "list", 0, "y"], true), { line: 4, col: 7 });
  t.same(s.position(["top", "missing", "deeper"]), { line: 2, col: 3 });
  t.equal(pathLabel(["rules", 2, "allow"]), "rules[2].allow");
  t.equal(pathLabel([]), "(document)");
});
