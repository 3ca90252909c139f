/* global document, sessionStorage, fetch, TextDecoderStream, URLSearchParams, AbortController */
// The review page: plain DOM, no framework, no build step. Talks to the audit API with the
// token the reviewer pasted (kept in sessionStorage: gone when the tab closes). The live tail
// uses fetch() with a streamed body instead of EventSource, because EventSource cannot send
// the Authorization header and the token must never go into a URL.
const KEY = "ztgate.token";
const $ = (id) => document.getElementById(id);
const state = { cursor: null, pages: 0, live: null, liveGateway: false };

function token() {
  return sessionStorage.getItem(KEY);
}

function setTokenState(kind, text) {
  const el = $("token-state");
  el.className = `state ${kind}`;
  el.textContent = text;
}

function notice(text, error = false) {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.className = error ? "error" : "";
}

/** Turns a failed answer into what the reviewer must do; throws so callers stop. */
async function failed(res) {
  let doc = {};
  try { doc = await res.json(); } catch { /* not a problem document */ }
  if (res.status === 401) {
    const expired = doc.reason === "token-expired";
    setTokenState("expired", expired ? "token expired" : "token refused");
    $("token-panel").hidden = false;
    notice(expired ? "Your token has expired: paste a fresh one." : `The gateway refused the token (${doc.detail || doc.reason || "invalid"}): paste a valid one.`, true);
  } else if (res.status === 403) {
    setTokenState("forbidden", "not an auditor");
    notice(`This token may not read the decision log: ${doc.detail || "forbidden"}`, true);
  } else {
    notice(`${doc.title || res.statusText}: ${doc.detail || ""}`, true);
  }
  throw new Error(`HTTP ${res.status}`);
}

async function api(path) {
  const t = token();
  if (!t) {
    setTokenState("missing", "no token");
    $("token-panel").hidden = false;
    notice("Paste a token with an auditor role to see the decision log.", true);
    throw new Error("no token");
  }
  const res = await fetch(path, { headers: { authorization: `Bearer ${t}`, accept: "application/json" }, cache: "no-store" });
  if (!res.ok) await failed(res);
  setTokenState("ok", "token ok");
  return res.json();
}

function filters() {
  const q = new URLSearchParams();
  for (const name of ["decision", "asset", "subject", "action", "reason", "since", "until"]) {
    const v = $(`filter-${name}`).value.trim();
    if (v) q.set(name, v);
  }
  // The reviewer's own reads of this log are decisions too: left out unless asked for.
  if (!$("filter-gateway").checked) q.set("gateway", "false");
  return q;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  td.title = text ?? "";
  if (cls) td.className = cls;
  tr.append(td);
}

function target(t) {
  if (!t) return "";
  if (t.point) return t.point;
  if (t.node) return `node:${t.node}`;
  if (t.table) return `${t.table}:${t.address}${t.count > 1 ? `-${t.address + t.count - 1}` : ""}`;
  return JSON.stringify(t);
}

function row(r, full) {
  const tr = document.createElement("tr");
  tr.dataset.id = r.id;
  const time = (r.time || "").replace("T", " ").replace(/\.\d+Z$/, "");
  cell(tr, full ? time : time.slice(11));
  tr.firstChild.title = r.time || "";
  cell(tr, r.decision, r.decision);
  cell(tr, r.asset ?? "(gateway)");
  cell(tr, r.subject ? r.subject.sub : "(none)");
  cell(tr, r.action);
  if (full) cell(tr, target(r.target));
  cell(tr, r.reason);
  if (full) {
    cell(tr, r.rule ?? "");
    cell(tr, r.client ? `${r.client.protocol} ${r.client.address}` : "");
  }
  return tr;
}

async function loadPage(cursor) {
  const q = filters();
  q.set("type", "decision");
  q.set("limit", "50");
  if (cursor) q.set("cursor", cursor);
  const page = await api(`/v1/decisions?${q}`);
  const body = $("decisions").tBodies[0];
  body.replaceChildren(...page.records.map((r) => row(r, true)));
  state.cursor = page.next;
  state.pages = cursor ? state.pages + 1 : 1;
  $("older").disabled = !page.next;
  $("page-info").textContent = `page ${state.pages} · ${page.records.length} decisions${page.next ? "" : " · end of log"}`;
}

function tally(tableId, rows, key) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    cell(tr, r[key] ?? (key === "asset" ? "(gateway)" : "(none)"));
    cell(tr, String(r.allow), "n");
    cell(tr, String(r.deny), r.deny > 0 ? "n deny" : "n");
    return tr;
  }));
}

async function loadSummary() {
  const q = filters();
  q.delete("decision");
  const s = await api(`/v1/decisions/summary?${q}`);
  tally("summary-assets", s.byAsset, "asset");
  tally("summary-subjects", s.bySubject, "subject");
}

/** Writes held for approval (GET /v1/approvals): listed, not decided, on this page. */
async function loadApprovals() {
  const { approvals } = await api("/v1/approvals");
  const body = $("approvals").tBodies[0];
  body.replaceChildren(...approvals.map((a) => {
    const tr = document.createElement("tr");
    cell(tr, a.requestedAt.slice(0, 19).replace("T", " "));
    cell(tr, a.expiresAt.slice(0, 19).replace("T", " "));
    cell(tr, a.requester.sub);
    cell(tr, a.asset);
    cell(tr, a.action);
    cell(tr, a.target.point ?? a.target.node ?? `${a.target.table}:${a.target.address}`);
    cell(tr, a.values.map((v) => `${v.point ?? v.address ?? v.node}=${v.value ?? v.raw}`).join(", "));
    cell(tr, a.rule ?? "");
    cell(tr, a.roles.join(", "));
    cell(tr, a.id);
    return tr;
  }));
  $("approvals-panel").dataset.count = String(approvals.length);
}

async function loadPolicy() {
  try {
    const p = await api("/v1/policy");
    $("policy-revision").textContent = p.revision;
    $("policy-revision").title = `loaded ${p.loadedAt}${p.lastRejected ? ` · last rejected change ${p.lastRejected.at}` : ""}`;
  } catch { /* shown by api() */ }
}

async function refresh() {
  notice("");
  try {
    await loadPage(null);
    await loadSummary();
    await loadPolicy();
    await loadApprovals();
  } catch { return; /* shown by api() */ }
  // The live tail follows as soon as a token works (the button stops and restarts it); it
  // shows every decision, the gateway's endpoints as the checkbox says.
  if (state.live && state.liveGateway !== $("filter-gateway").checked) toggleLive();
  if (!state.live) toggleLive();
}

/** Empties what the page shows of the log (no token any more). */
function clear() {
  for (const id of ["decisions", "live", "summary-assets", "summary-subjects", "approvals"]) $(id).tBodies[0].replaceChildren();
  $("policy-revision").textContent = "–";
  $("page-info").textContent = "";
  $("older").disabled = true;
}

/** Reads server-sent events from a fetch body: blank-line separated blocks of `field: value` lines. */
async function follow(signal) {
  const t = token();
  if (!t) return api("/v1/decisions/stream");
  const q = new URLSearchParams({ type: "decision" });
  if (!$("filter-gateway").checked) q.set("gateway", "false");
  const res = await fetch(`/v1/decisions/stream?${q}`, { headers: { authorization: `Bearer ${t}`, accept: "text/event-stream" }, signal, cache: "no-store" });
  if (!res.ok) await failed(res);
  $("live-toggle").dataset.state = "open";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (event === "record" && data) {
        const body = $("live").tBodies[0];
        const tr = row(JSON.parse(data), false);
        tr.className = "new";
        body.prepend(tr);
        while (body.rows.length > 100) body.deleteRow(-1);
      } else if (event === "end") {
        const why = JSON.parse(data).reason;
        if (why === "token-expired") { setTokenState("expired", "token expired"); notice("Your token has expired: the live tail stopped. Paste a fresh one.", true); }
        return;
      }
    }
  }
}

function toggleLive() {
  const btn = $("live-toggle");
  if (state.live) {
    state.live.abort();
    state.live = null;
    btn.textContent = "Start";
    delete btn.dataset.state;
    return;
  }
  const live = new AbortController();
  state.live = live;
  state.liveGateway = $("filter-gateway").checked;
  btn.textContent = "Stop";
  follow(live.signal).catch(() => undefined).finally(() => {
    // A stream stopped and restarted at once ends after its successor began: leave that one be.
    if (state.live !== live) return;
    state.live = null;
    btn.textContent = "Start";
    delete btn.dataset.state;
  });
}

function init() {
  $("token-change").addEventListener("click", () => { $("token-panel").hidden = !$("token-panel").hidden; });
  $("token-save").addEventListener("click", () => {
    const v = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
    if (!v) return;
    sessionStorage.setItem(KEY, v);
    $("token-input").value = "";
    $("token-panel").hidden = true;
    void refresh();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("token-input").value = "";
    if (state.live) toggleLive();
    clear();
    setTokenState("missing", "no token");
    notice("Token forgotten. Paste a token with an auditor role to see the decision log.", true);
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); void refresh(); });
  $("filters").addEventListener("reset", () => setTimeout(() => void refresh(), 0));
  $("older").addEventListener("click", () => void loadPage(state.cursor).catch(() => undefined));
  $("newest").addEventListener("click", () => void loadPage(null).catch(() => undefined));
  $("live-toggle").addEventListener("click", toggleLive);
  $("approvals-refresh").addEventListener("click", () => void loadApprovals().catch(() => undefined));
  void refresh();
}

init();
