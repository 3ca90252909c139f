// The review page (SPEC §5.3 `GET /ui/`): static files from ./ui, read once at start, served
// with their content type and a strict Content-Security-Policy (own scripts, styles and
// fetches only; no inline code, no frames). The page itself holds no secret: it asks for a
// token and calls the audit API with it, so serving it needs none.
import { readFileSync, readdirSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { notFound } from "./problem.js";

const DIR = fileURLToPath(new URL("./ui/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const fileParams = { type: "object", required: ["file"], additionalProperties: false, properties: { file: { type: "string", pattern: "^[a-z0-9-]+\\.(css|js|svg)$" } } } as const;

export async function uiRoutes(app: FastifyInstance): Promise<void> {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(DIR)) {
    const type = TYPES[extname(name)];
    if (type) files.set(name, { type, body: readFileSync(join(DIR, name)) });
  }
  const send = (name: string) => {
    const f = files.get(name);
    if (!f) throw notFound(`no file ${name} under /ui/`);
    return f;
  };
  const headers = { "content-security-policy": CSP, "cache-control": "no-cache", "referrer-policy": "no-referrer", "x-frame-options": "DENY" };

  app.get("/ui", async (_req, reply) => reply.redirect("/ui/", 301));
  app.get("/ui/", async (_req, reply) => {
    const f = send("index.html");
    return reply.headers(headers).type(f.type).send(f.body);
  });
  app.get<{ Params: { file: string } }>("/ui/:file", { schema: { params: fileParams } }, async (req, reply) => {
    const f = send(req.params.file);
    return reply.headers(headers).type(f.type).send(f.body);
  });
}
