// The report as a self-contained HTML page (inline CSS and SVG, no script) or as Markdown.
import type { Report } from "./report.js";
import type { Block, Section, Table } from "./sections.js";
import { sections } from "./sections.js";
import { OUTCOME_SERIES, barChart, columnChart, esc, visible } from "./svg.js";

export const REPORT_FORMATS = ["html", "md"] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

const CSS = `body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right}.ok{color:#2e7d32;font-weight:bold}.bad{color:#c62828;font-weight:bold}.warn{color:#b26a00;font-weight:bold}
nav a{margin-right:1em}svg{display:block;margin:.8em 0}@media print{nav{display:none}}`;

/** A cell that links to a section (`#id`) is shown as a link. */
function cellHtml(c: string): string {
  return /^#[a-z-]+$/.test(c) ? `<a href="${c}">${c.slice(1)}</a>` : esc(c);
}

function tableHtml(t: Table): string {
  const head = `<tr>${t.headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>`;
  const rows = t.rows.map((r) => `<tr>${r.map((c) => `<td${/^\d+$/.test(c) ? ' class="n"' : ""}>${cellHtml(c)}</td>`).join("")}</tr>`).join("\n");
  return `<table>\n${head}\n${rows}\n</table>${t.more ? `<p><em>${esc(t.more)}</em></p>` : ""}`;
}

function blockHtml(b: Block): string {
  if ("p" in b) return `<p${b.status ? ` class="${b.status}"` : ""}>${esc(b.p)}</p>`;
  if ("table" in b) return tableHtml(b.table);
  if (b.chart.bars.length === 0) return "";
  return b.chart.kind === "bars" ? barChart(b.chart.title, b.chart.bars, OUTCOME_SERIES) : columnChart(b.chart.title, b.chart.bars, OUTCOME_SERIES);
}

export function renderHtml(r: Report): string {
  const s = sections(r);
  const nav = s.map((x) => `<a href="#${x.id}">${esc(x.title.split(",")[0] as string)}</a>`).join("");
  const body = s.map((x: Section) => `<section id="${x.id}">\n<h2>${esc(x.title)}</h2>\n${x.blocks.map(blockHtml).join("\n")}\n</section>`).join("\n");
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ztgate evidence report</title><style>${CSS}</style></head>
<body>
<h1>ztgate evidence report</h1>
<nav>${nav}</nav>
${body}
</body>
</html>
`;
}

/** Markdown table cells: no line breaks, pipes and control characters escaped. */
function mdCell(c: string): string {
  if (/^#[a-z-]+$/.test(c)) return `[${c.slice(1)}](${c})`;
  return visible(c.replace(/[\r\n]+/g, " ")).replace(/[\\|<>`*_[\]]/g, (x) => `\\${x}`);
}

function mdText(s: string): string {
  return visible(s).replace(/[<>`*_[\]]/g, (x) => `\\${x}`);
}

function tableMd(t: Table): string {
  const lines = [`| ${t.headers.map(mdCell).join(" | ")} |`, `| ${t.headers.map(() => "---").join(" | ")} |`, ...t.rows.map((r) => `| ${r.map(mdCell).join(" | ")} |`)];
  if (t.more) lines.push("", `_${mdText(t.more)}_`);
  return lines.join("\n");
}

function blockMd(b: Block): string {
  if ("p" in b) return b.status === "bad" || b.status === "warn" ? `**${mdText(b.p)}**` : mdText(b.p);
  if ("table" in b) return tableMd(b.table);
  // Markdown has no charts: the same numbers are in the section's tables.
  return "";
}

export function renderMarkdown(r: Report): string {
  const s = sections(r);
  const parts = ["# ztgate evidence report", "", s.map((x) => `[${mdText(x.title.split(",")[0] as string)}](#${x.id})`).join(" · ")];
  for (const x of s) {
    parts.push("", `<a id="${x.id}"></a>`, "", `## ${mdText(x.title)}`);
    for (const b of x.blocks) {
      const text = blockMd(b);
      if (text !== "") parts.push("", text);
    }
  }
  return parts.join("\n") + "\n";
}

export function render(r: Report, format: ReportFormat): string {
  return format === "html" ? renderHtml(r) : renderMarkdown(r);
}
