// The review page (SPEC §5.3 `GET /ui/`) in a real browser: Debian's headless Chromium driven
// by playwright-core, against the HTTP API listening with HTTPS on 127.0.0.1:0 (the dev server
// certificate; Chromium is told to accept exactly that certificate's key and no other), over
// a real decision log and policies for two assets, with decisions made through the API.
//
// It shows: a missing and an expired token are said clearly; with an auditor's token the page
// shows the policy revision, the summaries and the log; the table filters to the denies of one
// asset; a new decision appears in the live tail. Screenshots at 1280×800: one in the test's
// directory, and docs/review-page.png (the README's) when ZTGATE_SCREENSHOT=1.
import t from "tap";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { KEY_FILES } from "../../src/auth/keys.js";
import { readLog } from "../../src/audit/query.js";
import type { LogRecord } from "../../src/audit/record.js";
import { setupApi } from "./http-setup.js";
import type { Api } from "./http-setup.js";

const CHROMIUM = "/usr/bin/chromium";
const DOCS_SHOT = fileURLToPath(new URL("../../docs/review-page.png", import.meta.url));
const WAIT = { timeout: 30_000 };

/** Width and height of a PNG, from its IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  if (png.subarray(1, 4).toString("latin1") !== "PNG") throw new Error("not a PNG");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** base64 SHA-256 of the certificate's SubjectPublicKeyInfo: what --ignore-certificate-errors-spki-list takes. */
function spkiHash(certPem: string): string {
  const der = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("base64");
}

async function decisions(api: Api): Promise<Array<LogRecord & { decision: string; asset: string | null; reason: string }>> {
  await api.log.flush();
  const out = [];
  for await (const f of readLog(api.logDir)) if (f.record?.type === "decision") out.push(f.record as LogRecord & { decision: string; asset: string | null; reason: string });
  return out;
}

// What the page functions below use of the browser: they run there, and this project is not
// compiled with the DOM's types. (Functions, never strings: the page's Content-Security-Policy
// forbids eval, and Playwright evaluates string predicates with it.)
interface Cell {
  readonly textContent: string | null;
}
interface Row extends Cell {
  readonly children: ArrayLike<Cell>;
}
declare const document: { getElementById(id: string): Cell | null; querySelectorAll(selector: string): ArrayLike<Row> };
declare const sessionStorage: { getItem(key: string): string | null };

/** Waits until `check(arg)`, run in the page, is true. */
function until(page: Page, check: (arg: string) => boolean, arg: string): Promise<unknown> {
  return page.waitForFunction(check, arg, WAIT);
}

/** The data-id of every row of a table body. */
function rowIds(page: Page, table: string): Promise<string[]> {
  return page.$$eval(`#${table} tbody tr`, (rows) => rows.map((r) => r.getAttribute("data-id") ?? ""));
}

t.test("the review page in headless Chromium", { timeout: 180_000, skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (apt-get install chromium)` }, async (t) => {
  const api = await setupApi(t, { feedPump: true, https: true });
  const hist = await api.token("historian-01", ["historian"]);
  const mes = await api.token("mes-line1", ["mes"]);
  const expired = await api.token("auditor-7", ["auditor"], { ttl: -300 });
  const auditor = await api.token("auditor-7", ["auditor"]);

  // Allows and denies on both assets, by two subjects and one refused token.
  const made: Array<[method: "GET" | "PUT", url: string, token: string, body: unknown, status: number]> = [
    ["GET", "/v1/assets/boiler-plc/points/temperature", hist, undefined, 200],
    ["GET", "/v1/assets/boiler-plc/points/pressure", hist, undefined, 200],
    ["GET", "/v1/assets/feed-pump/points/flow", hist, undefined, 200],
    ["GET", "/v1/assets/feed-pump/points/speed", mes, undefined, 200],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", mes, { value: 60 }, 200],
    ["PUT", "/v1/assets/feed-pump/points/speed", mes, { value: 1200 }, 200],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", hist, { value: 50 }, 403],
    ["PUT", "/v1/assets/boiler-plc/points/setpoint", mes, { value: 95 }, 403],
    ["PUT", "/v1/assets/boiler-plc/points/burner_on", mes, { value: true }, 403],
    ["PUT", "/v1/assets/feed-pump/points/speed", hist, { value: 1000 }, 403],
    ["PUT", "/v1/assets/feed-pump/points/speed", mes, { value: 2900 }, 403],
    ["GET", "/v1/assets/feed-pump/points/flow", expired, undefined, 401],
  ];
  for (const [method, url, token, body, status] of made) {
    const r = await api.call(method, url, { token, ...(body !== undefined && { body }) });
    t.equal(r.status, status, `${method} ${url} ${JSON.stringify(body ?? "")}`);
  }
  const pumpDenies = (await decisions(api)).filter((d) => d.asset === "feed-pump" && d.decision === "deny").map((d) => d.id);
  t.equal(pumpDenies.length, 3, "three denies on feed-pump in the log");

  const base = await api.listen();
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    // --no-sandbox: tests run as root in a container, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage", `--ignore-certificate-errors-spki-list=${spkiHash(readFileSync(join(api.keysDir, KEY_FILES.serverCert), "utf8"))}`],
  });
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused fetch (401 with an expired token) is logged by Chromium as a resource error: expected.
    if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`console: ${m.text()}`);
  });

  await page.goto(`${base}/ui/`);
  t.equal(await page.title(), "ztgate · decision review");

  // No token: said in the header and in the notice, and the token field is shown.
  await page.waitForSelector("#notice:not([hidden])", WAIT);
  t.equal(await page.textContent("#token-state"), "no token");
  t.match(await page.textContent("#notice"), /Paste a token with an auditor role/);
  t.ok(await page.isVisible("#token-input"), "the token field is shown");
  t.equal(await page.$$eval("#decisions tbody tr", (r) => r.length), 0, "no decisions without a token");

  // An expired token: refused, and said so.
  await page.fill("#token-input", expired);
  await page.click("#token-save");
  await until(page, (want) => document.getElementById("token-state")?.textContent === want, "token expired");
  t.match(await page.textContent("#notice"), /Your token has expired: paste a fresh one/);
  t.ok(await page.isVisible("#token-input"), "the token field is shown again");
  t.equal(await page.getAttribute("#token-state", "class"), "state expired");

  // An auditor's token: the log, the summaries, the policy revision; the live tail opens.
  await page.fill("#token-input", `Bearer ${auditor}`);
  await page.click("#token-save");
  await until(page, (want) => document.getElementById("token-state")?.textContent === want, "token ok");
  await until(page, (want) => document.getElementById("policy-revision")?.textContent === want, api.policy.current().revision);
  t.ok(await page.isHidden("#notice"), "no notice once the token works");
  t.ok(await page.isHidden("#token-panel"), "the token field is put away");
  t.equal(await page.evaluate(() => sessionStorage.getItem("ztgate.token")), auditor, "the token is kept in session storage, without the Bearer prefix");
  await page.waitForSelector("#live-toggle[data-state=open]", WAIT);

  const shown = await rowIds(page, "decisions");
  // The reviewer's own reads (gateway endpoints, asset null) are left out unless asked for.
  const inLog = (await decisions(api)).filter((d) => d.asset !== null).map((d) => d.id);
  t.equal(shown.length, made.length, "the table shows the decisions on assets");
  t.same(shown, [...inLog].reverse(), "newest first, the log's decisions in order");
  const summary = async (table: string) =>
    Object.fromEntries(await page.$$eval(`#${table} tbody tr`, (rows) => rows.map((r) => [...r.querySelectorAll("td")].map((c) => c.textContent)).map(([k, a, d]) => [k, `${a}/${d}`])));
  await page.waitForSelector("#summary-assets tbody tr", WAIT);
  t.match(await summary("summary-assets"), { "boiler-plc": "3/3", "feed-pump": "3/3" }, "allows/denies per asset");
  t.match(await summary("summary-subjects"), { "historian-01": "3/2", "mes-line1": "3/3" }, "allows/denies per subject");

  // Filter: the denies of feed-pump.
  await page.selectOption("#filter-decision", "deny");
  await page.fill("#filter-asset", "feed-pump");
  await page.click("#apply");
  await until(page, (asset) => Array.from(document.querySelectorAll("#decisions tbody tr")).every((r) => r.children[2]?.textContent === asset), "feed-pump");
  const filtered = await page.$$eval("#decisions tbody tr", (rows) => rows.map((r) => ({ id: r.getAttribute("data-id"), cells: [...r.querySelectorAll("td")].map((c) => c.textContent) })));
  t.same(filtered.map((r) => r.id).sort(), [...pumpDenies].sort(), "exactly the feed-pump denies of the log");
  for (const r of filtered) t.same(r.cells.slice(1, 3), ["deny", "feed-pump"], "each row a deny of feed-pump");
  t.same(filtered.map((r) => r.cells[6]).sort(), ["no-matching-rule", "token-expired", "value-out-of-range"], "with their reasons");
  t.match(await page.textContent("#page-info"), /page 1 · 3 decisions · end of log/);
  await page.screenshot({ path: join(t.testdirName, "review-page-filtered.png") });

  // The gateway's own endpoints, when asked for: the expired token's try at the log is there.
  await page.fill("#filter-asset", "");
  // This refresh restarts the live tail with the gateway's endpoints (its last step, after
  // every table is loaded): that stream must be up before the checkbox is cleared again, or
  // this refresh would see the box already clear and restart nothing.
  const withGateway = page.waitForResponse((r) => r.url().includes("/v1/decisions/stream?") && !new URL(r.url()).searchParams.has("gateway"), WAIT);
  await page.check("#filter-gateway");
  await page.click("#apply");
  await until(page, (asset) => Array.from(document.querySelectorAll("#decisions tbody tr")).some((r) => r.children[2]?.textContent === asset), "(gateway)");
  const gatewayRows = await page.$$eval("#decisions tbody tr", (rows) => rows.map((r) => [...r.querySelectorAll("td")].map((c) => c.textContent)).filter((c) => c[2] === "(gateway)"));
  t.same(gatewayRows.map((c) => c.slice(1, 7)), [["deny", "(gateway)", "(none)", "read", "decisions", "token-expired"]], "one deny on the gateway's endpoints: the expired token");
  await until(page, (asset) => Array.from(document.querySelectorAll("#summary-assets tbody tr")).some((r) => r.children[0]?.textContent === asset), "(gateway)");
  t.match(await summary("summary-assets"), { "(gateway)": /^\d+\/1$/ }, "and in the summary");
  t.equal((await withGateway).status(), 200, "the live tail restarted with the gateway's endpoints");
  // The live tail restarts without the gateway's endpoints. The new stream must be open before
  // the decision below is made (the old one's "open" state lingers until the page restarts it):
  // the server subscribes before it answers the stream's headers, so the response is the signal.
  const restarted = page.waitForResponse((r) => r.url().includes("/v1/decisions/stream?") && new URL(r.url()).searchParams.get("gateway") === "false", WAIT);
  await page.uncheck("#filter-gateway");
  await page.click("#apply");
  await until(page, (asset) => !Array.from(document.querySelectorAll("#decisions tbody tr")).some((r) => r.children[2]?.textContent === asset), "(gateway)");
  t.equal((await restarted).status(), 200, "the live tail restarted without the gateway's endpoints");
  await page.waitForSelector("#live-toggle[data-state=open]", WAIT);

  // A new decision appears in the live tail.
  const denied = await api.call("PUT", "/v1/assets/boiler-plc/points/setpoint", { token: hist, body: { value: 41 } });
  t.equal(denied.status, 403);
  const id = String(denied.body?.["decisionId"]);
  await page.waitForSelector(`#live tbody tr[data-id="${id}"]`, WAIT);
  t.match(await page.$eval(`#live tbody tr[data-id="${id}"]`, (r) => [...r.querySelectorAll("td")].map((c) => c.textContent).slice(1)), ["deny", "boiler-plc", "historian-01", "write", "no-matching-rule"]);
  const allowed = await api.call("GET", "/v1/assets/feed-pump/points/flow", { token: hist });
  t.equal(allowed.status, 200);
  await page.waitForSelector(`#live tbody tr[data-id="${String(allowed.body?.["decisionId"])}"]`, WAIT);
  t.equal(await page.$eval("#live tbody tr", (r) => r.getAttribute("data-id")), allowed.body?.["decisionId"], "newest on top");

  // The page as a reviewer sees it, unfiltered, at 1280×800.
  // The reset's refresh ends with the approvals (its last request): all of it is on screen
  // before the token is forgotten below, so nothing arrives after.
  const approvalsLoaded = page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/approvals", WAIT);
  await page.click("#reset");
  await (await approvalsLoaded).finished();
  await until(page, (effect) => Array.from(document.querySelectorAll("#decisions tbody tr")).some((r) => r.children[1]?.textContent === effect), "allow");
  await until(page, (n) => document.querySelectorAll("#decisions tbody tr").length > Number(n), "3");
  const shot = await page.screenshot({ path: join(t.testdirName, "review-page.png") });
  t.same(pngSize(shot), { width: 1280, height: 800 });
  if (process.env["ZTGATE_SCREENSHOT"] === "1") {
    mkdirSync(dirname(DOCS_SHOT), { recursive: true });
    writeFileSync(DOCS_SHOT, shot);
  }

  // Forget: the token is gone and the page says so.
  await page.click("#token-change");
  await page.click("#token-forget");
  t.equal(await page.textContent("#token-state"), "no token");
  t.match(await page.textContent("#notice"), /Token forgotten/);
  t.equal(await page.evaluate(() => sessionStorage.getItem("ztgate.token")), null);
  t.equal(await page.$$eval("#decisions tbody tr, #live tbody tr, #summary-assets tbody tr", (r) => r.length), 0, "nothing of the log stays on screen");

  t.same(problems, [], "no script errors, no CSP violations");
  await browser.close();
});
