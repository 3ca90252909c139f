// Reads a policy directory: every *.yaml / *.yml file directly in it (tests/ is not policy).
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { PolicySet } from "../pdp/policy-set.js";
import type { Diagnostic } from "../util/yaml-source.js";
import { compilePolicies } from "./compile.js";
import type { PolicySource } from "./compile.js";

/** How a path is shown in messages: relative to the working directory when inside it. */
export function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

export async function readYamlFiles(dir: string): Promise<{ sources: PolicySource[]; diagnostics: Diagnostic[] }> {
  let names: string[];
  try {
    // Symbolic links are followed (a Kubernetes ConfigMap mounts each file as one); a *.yaml
    // entry that is not a file then is an error below, never skipped in silence.
    names = (await readdir(dir, { withFileTypes: true })).filter((d) => (d.isFile() || d.isSymbolicLink()) && /\.ya?ml$/.test(d.name)).map((d) => d.name).sort();
  } catch (e) {
    return { sources: [], diagnostics: [{ file: displayPath(dir), line: 0, col: 0, message: `cannot read directory: ${(e as Error).message}` }] };
  }
  const sources: PolicySource[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const name of names) {
    const full = path.join(dir, name);
    try {
      if (!(await stat(full)).isFile()) throw new Error("not a regular file (a link to a directory or device?)");
      sources.push({ file: displayPath(full), text: await readFile(full, "utf8") });
    } catch (e) {
      diagnostics.push({ file: displayPath(full), line: 0, col: 0, message: `cannot read file: ${(e as Error).message}` });
    }
  }
  return { sources, diagnostics };
}

export async function loadPolicyDir(dir: string): Promise<{ set?: PolicySet; diagnostics: Diagnostic[] }> {
  const { sources, diagnostics } = await readYamlFiles(dir);
  if (diagnostics.length === 0 && sources.length === 0) {
    return { diagnostics: [{ file: displayPath(dir), line: 0, col: 0, message: "no policy files (*.yaml, *.yml) in this directory" }] };
  }
  const compiled = compilePolicies(sources);
  if (diagnostics.length > 0) return { diagnostics: [...diagnostics, ...compiled.diagnostics] };
  return compiled;
}
