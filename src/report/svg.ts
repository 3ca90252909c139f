// Inline SVG charts for the HTML report: no script, no external file, readable when printed.
// Every label passes through esc(): subject names and targets come from clients.

/** Control characters (a terminal escape in a subject name) shown as \uXXXX, not passed on; tab and newline kept. */
export function visible(s: string): string {
  let out = "";
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    out += (c < 0x20 && c !== 9 && c !== 10) || c === 0x7f ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}

export function esc(s: string): string {
  return visible(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

export interface Series {
  readonly name: string;
  readonly color: string;
}

export interface Bar {
  readonly label: string;
  /** One value per series, stacked in series order. */
  readonly values: readonly number[];
}

export const OUTCOME_SERIES: readonly Series[] = [
  { name: "allowed", color: "#2e7d32" },
  { name: "would-deny (monitor)", color: "#f9a825" },
  { name: "denied", color: "#c62828" },
];

function legend(series: readonly Series[], y: number): string {
  let x = 0;
  return series.map((s) => {
    const out = `<rect x="${x}" y="${y}" width="10" height="10" fill="${s.color}"/><text x="${x + 14}" y="${y + 9}">${esc(s.name)}</text>`;
    x += 24 + s.name.length * 7;
    return out;
  }).join("");
}

function short(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Horizontal stacked bars, one per label, with the total at the end of each. */
export function barChart(title: string, bars: readonly Bar[], series: readonly Series[]): string {
  const labelW = 190;
  const barW = 380;
  const rowH = 22;
  const max = Math.max(1, ...bars.map((b) => b.values.reduce((a, v) => a + v, 0)));
  const height = bars.length * rowH + 34;
  const rows = bars.map((b, i) => {
    const y = i * rowH;
    let x = labelW;
    const total = b.values.reduce((a, v) => a + v, 0);
    const segs = b.values.map((v, j) => {
      const w = (v / max) * barW;
      const s = series[j] as Series;
      const rect = v > 0 ? `<rect x="${x.toFixed(1)}" y="${y + 3}" width="${Math.max(w, 1).toFixed(1)}" height="${rowH - 6}" fill="${s.color}"><title>${esc(`${b.label}: ${v} ${s.name}`)}</title></rect>` : "";
      x += w;
      return rect;
    }).join("");
    return `<text x="${labelW - 6}" y="${y + rowH / 2 + 4}" text-anchor="end"><title>${esc(b.label)}</title>${esc(short(b.label, 26))}</text>${segs}<text x="${(x + 4).toFixed(1)}" y="${y + rowH / 2 + 4}">${total}</text>`;
  }).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${esc(title)}" width="${labelW + barW + 60}" height="${height}" viewBox="0 0 ${labelW + barW + 60} ${height}" font-family="sans-serif" font-size="12"><title>${esc(title)}</title>${rows}<g transform="translate(${labelW},${bars.length * rowH + 12})">${legend(series, 0)}</g></svg>`;
}

/** Vertical stacked columns over time (one per day), with the first and last day labelled. */
export function columnChart(title: string, bars: readonly Bar[], series: readonly Series[]): string {
  const h = 140;
  const colW = Math.max(4, Math.min(24, Math.floor(600 / Math.max(1, bars.length))));
  const width = Math.max(460, bars.length * colW + 50);
  const max = Math.max(1, ...bars.map((b) => b.values.reduce((a, v) => a + v, 0)));
  const cols = bars.map((b, i) => {
    let y = h;
    const x = 40 + i * colW;
    return b.values.map((v, j) => {
      const hh = (v / max) * h;
      y -= hh;
      const s = series[j] as Series;
      return v > 0 ? `<rect x="${x}" y="${y.toFixed(1)}" width="${colW - 2}" height="${Math.max(hh, 1).toFixed(1)}" fill="${s.color}"><title>${esc(`${b.label}: ${v} ${s.name}`)}</title></rect>` : "";
    }).join("");
  }).join("");
  const first = bars[0]?.label ?? "";
  const last = bars.at(-1)?.label ?? "";
  const axis = `<line x1="38" y1="${h}" x2="${width}" y2="${h}" stroke="#999"/><text x="34" y="10" text-anchor="end">${max}</text><text x="34" y="${h}" text-anchor="end">0</text>` +
    `<text x="40" y="${h + 16}">${esc(first)}</text>${bars.length > 1 ? `<text x="${40 + (bars.length - 1) * colW + colW}" y="${h + 16}" text-anchor="end">${esc(last)}</text>` : ""}`;
  const height = h + 44;
  return `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${esc(title)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12"><title>${esc(title)}</title>${axis}${cols}<g transform="translate(40,${h + 26})">${legend(series, 0)}</g></svg>`;
}
