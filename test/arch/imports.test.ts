// The decision core and the wire codecs stay pure: no I/O modules, no protocol packages,
// no imports from the layers above them (STYLE.md). This test reads the sources.
import t from "tap";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const src = fileURLToPath(new URL("../../src", import.meta.url));
const IO = /^(node:)?(fs|fs\/promises|net|tls|http|https|http2|dgram|child_process|worker_threads|cluster|dns|os|process|readline)$/;
const PROTOCOL = /^(modbus-serial|node-opcua.*|fastify.*|pino|prom-client|undici)$/;
const PURE = ["pdp", "wire"];
const PURE_MAY_IMPORT = new Set(["pdp", "wire"]);

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

export function importsOf(text: string): string[] {
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|require\(\s*["']([^"']+)["']\s*\)/g;
  const out: string[] = [];
  for (const m of text.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3]) as string);
  return out;
}

t.test("the import scanner sees every form of import", async (t) => {
  t.same(importsOf(`import a from "node:fs";\nimport type { B } from './b.js';\nexport { c } from "../c.js";\nconst d = await import("net");`), ["node:fs", "./b.js", "../c.js", "net"]);
});

for (const layer of PURE) {
  t.test(`src/${layer} does no I/O and imports nothing from above`, async (t) => {
    const list = await files(path.join(src, layer));
    if (layer === "pdp") t.ok(list.length > 5, "the pdp has sources to check");
    for (const f of list) {
      const rel = path.relative(src, f);
      for (const spec of importsOf(await readFile(f, "utf8"))) {
        t.notMatch(spec, IO, `${rel} imports I/O module ${spec}`);
        t.notMatch(spec, PROTOCOL, `${rel} imports protocol/runtime package ${spec}`);
        if (spec.startsWith(".")) {
          const target = path.relative(src, path.resolve(path.dirname(f), spec)).split(path.sep)[0] as string;
          t.ok(PURE_MAY_IMPORT.has(target), `${rel} imports ${spec} (layer ${target}), outside the pure layers`);
        }
      }
    }
  });
}

t.test("the pdp does not read the clock or randomness", async (t) => {
  for (const f of await files(path.join(src, "pdp"))) {
    const text = await readFile(f, "utf8");
    t.notMatch(text, /Date\.now\(|new Date\(\)|Math\.random\(|performance\.now\(/, `${path.relative(src, f)} reads the clock or randomness`);
  }
});
