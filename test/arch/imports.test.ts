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

/**
 * The IT side (fronts) and the OT side (devices, the simulated plant) meet only in pep and auth
 * (STYLE.md): the OT side knows nothing of fronts, of the enforcement path or of the CLI, and
 * no front reaches into the simulated plant or the CLI, nor into another protocol's front.
 */
const FORBIDDEN: Record<string, readonly string[]> = {
  devices: ["fronts", "pep", "cli", "main.ts"],
  sim: ["fronts", "pep", "devices", "cli", "main.ts"],
  fronts: ["sim", "cli", "main.ts"],
  pep: ["fronts", "devices", "sim", "cli", "main.ts"],
  auth: ["fronts", "devices", "sim", "pep", "cli", "main.ts"],
};

for (const [layer, forbidden] of Object.entries(FORBIDDEN)) {
  t.test(`src/${layer} imports none of ${forbidden.join(", ")}`, async (t) => {
    const list = await files(path.join(src, layer));
    if (layer === "fronts") t.ok(list.length >= 3, "the fronts have sources to check");
    for (const f of list) {
      const rel = path.relative(src, f);
      for (const spec of importsOf(await readFile(f, "utf8"))) {
        if (!spec.startsWith(".")) continue;
        const target = path.relative(src, path.resolve(path.dirname(f), spec)).split(path.sep)[0] as string;
        t.notOk(forbidden.includes(target.replace(/\.js$/, ".ts")), `${rel} imports ${spec} (${target})`);
      }
    }
  });
}

t.test("a front of one protocol never imports another protocol's front", async (t) => {
  for (const f of await files(path.join(src, "fronts"))) {
    const rel = path.relative(src, f);
    const own = rel.startsWith(`fronts${path.sep}http`) ? "http" : "modbus";
    for (const spec of importsOf(await readFile(f, "utf8"))) {
      if (!spec.startsWith(".")) continue;
      const target = path.relative(src, path.resolve(path.dirname(f), spec));
      if (!target.startsWith(`fronts${path.sep}`)) continue;
      const theirs = target.startsWith(`fronts${path.sep}http`) ? "http" : "modbus";
      t.equal(theirs, own, `${rel} imports ${spec}`);
    }
  }
});
