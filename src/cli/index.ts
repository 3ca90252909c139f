// The `ztgate` command: one function per subcommand, each thin; errors become one clear
// message and an exit code (2 for usage, 1 for failures), never a bare stack trace.
import { UsageError, ZtError } from "../errors.js";
import { certCommand } from "./cert.js";
import { helpFor } from "./help.js";
import { keysCommand } from "./keys.js";
import { logCommand } from "./log.js";
import { policyCommand } from "./policy.js";
import { reportCommand } from "./report.js";
import { sessionCommand } from "./session.js";
import { simCommand } from "./sim.js";
import { tokenCommand } from "./token.js";
import type { Io } from "./io.js";
import { processIo } from "./io.js";

const USAGE = `usage: ztgate <command>
  start [--config F]             run the gateway
  sim [--config F]               run only the simulated plant (boiler PLC, packaging line OPC UA server)
  policy check [DIR]             validate every policy file
  policy explain …               show the decision for one operation and why
  policy test [DIR]              run the policy test cases under DIR/tests/
  policy diff OLD NEW --replay LOG  replay the log's decisions against two policy directories; list what changes
  policy suggest --from LOG --asset A  propose least-privilege rules from the asset's logged traffic
  keys init [--dir DIR]          create the dev CA, server certificate, issuer and signing keys, OPC UA PKI
  cert issue --cn NAME …         issue a client certificate from the dev CA (--role R, --opcua --app-uri URI)
  token issue --sub S …          print a dev JWT (--role R…, --ttl 15m, --claim k=v…)
  log verify [DIR] [--key PEM]   check the decision log's hash chain and signed checkpoints
  log query [filters] …          print decision log records (--since, --decision, --asset, …, --format table|json|csv)
  log tail [-f]                  print the latest records, and with -f new ones as they are written
  report [--since 30d] [--format html|md] [--out F]  evidence report for auditors (log integrity, decisions, IEC 62443 / NIST mapping)
  session list                   list open sessions and leases (via the gateway's HTTP API)
  session revoke --id|--sub|--jti  end a session; revoke a subject or a token (admin)
  session keep --token-file F    keep a Modbus lease, renewing it whenever F changes
ztgate COMMAND --help prints a command's options.`;

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  const help = helpFor(argv);
  if (help !== undefined) {
    io.out(help);
    return 0;
  }
  try {
    switch (cmd) {
      // Loaded only for `start`: the gateway pulls in node-opcua, whose load-time warnings on
      // stdout would otherwise land in every command's output (TOKEN=$(ztgate token issue …)).
      case "start": return await (await import("./start.js")).startCommand(rest, io);
      case "sim": return await simCommand(rest, io);
      case "policy": return await policyCommand(rest, io);
      case "keys": return await keysCommand(rest, io);
      case "log": return await logCommand(rest, io);
      case "cert": return await certCommand(rest, io);
      case "token": return await tokenCommand(rest, io);
      case "session": return await sessionCommand(rest, io);
      case "report": return await reportCommand(rest, io);
      case "help": case "--help": case "-h": io.out(USAGE); return 0;
      default:
        throw new UsageError(cmd === undefined ? "no command given; try ztgate help" : `unknown command "${cmd}"; try ztgate help`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`ztgate: ${e.message}`);
      return 2;
    }
    if (e instanceof ZtError) {
      io.err(`ztgate: ${e.code}: ${e.describe()}`);
      return 1;
    }
    io.err(`ztgate: internal error: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}
