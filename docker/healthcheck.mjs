// Docker HEALTHCHECK: GET /healthz on the HTTPS API, trusting the dev CA in certs/.
// Exit 0 when it answers 200, 1 otherwise (Docker's contract).
import { request } from "node:https";
import { readFileSync } from "node:fs";

const port = Number(process.env.ZTGATE_HTTP_PORT ?? 8443);
let ca;
try {
  ca = readFileSync(process.env.ZTGATE_CA ?? "certs/ca.pem");
} catch {
  process.exit(1);
}
const req = request({ host: "127.0.0.1", port, path: "/healthz", ca, timeout: 4000 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", () => process.exit(1));
req.end();
