// `--help` (or `-h`) for the commands whose own parser does not print one: `ztgate X --help`
// and `ztgate X Y --help` print the usage and options here and exit 0. The commands that
// print their own (sim, session, report, policy diff, policy suggest) are left to them.
import { SIM_USAGE } from "./sim.js";

const CONFIG = "  --config F       the configuration to read defaults from (default: gateway.yaml of this repository)";

const HELP: Readonly<Record<string, string>> = {
  start: `usage: ztgate start [--config F]
Runs the gateway: creates the development keys on first start, loads the configuration and
the policies, opens the decision log, starts the simulated plant (sim:, if enabled), the
devices, the Modbus and OPC UA fronts and the HTTP API, then prints what runs where and the
first commands to try (on stderr; the JSON logs go to stdout). Policy files are reloaded on
change and on SIGHUP. Stops on Ctrl-C or SIGTERM: connections closed, the decision log
flushed and checkpointed.
  --config F       the configuration (default: gateway.yaml of this repository)
exit: 0 on a clean shutdown, 1 on an invalid configuration or policy, or a part that cannot start`,
  keys: "usage: ztgate keys init [--dir DIR] [--force]",
  "keys init": `usage: ztgate keys init [--dir DIR] [--force]
Creates what is missing in DIR: the dev CA, the server certificate, the token issuer and
checkpoint signing key pairs, the OPC UA PKI folders (private keys mode 0600). Prints
created / kept / replaced per file.
  --dir DIR        where (default: keys.dir of gateway.yaml, certs/)
  --force          replace every file, even those present
exit: 0; 1 when a key pair is half present`,
  cert: "usage: ztgate cert issue --cn NAME [--role R] [--opcua --app-uri URI] [--out DIR] [--days N] [--dir DIR] [--force]",
  "cert issue": `usage: ztgate cert issue --cn NAME [--role R] [--opcua --app-uri URI] [--out DIR] [--days N] [--dir DIR] [--force]
Issues a client certificate and key from the dev CA, written to OUT/NAME.pem and
OUT/NAME.key.pem; prints the files and the certificate's x5t#S256.
  --cn NAME        the subject's common name (also the file name)
  --role R         the Modbus/TCP Security role extension (exactly one role)
  --opcua          an OPC UA client application certificate ...
  --app-uri URI    ... for the client's ApplicationUri (required with --opcua)
  --out DIR        where to write (default: keys.dir/clients, certs/clients/)
  --days N         validity, 1 to 3650 days (default 365)
  --dir DIR        the keys directory holding the dev CA (default: keys.dir of gateway.yaml)
  --force          replace existing files
exit: 0; 1 when the files exist (without --force) or there is no CA`,
  token: "usage: ztgate token issue --sub S [--role R]… [--ttl 15m] [--claim k=v]… [--aud A] [--bind-cert FILE] [--dir DIR]",
  "token issue": `usage: ztgate token issue --sub S [--role R]… [--ttl 15m] [--claim k=v]… [--aud A] [--bind-cert FILE] [--dir DIR]
Prints a JWT signed with the dev issuer key (keys.dir/issuer.key.pem, EdDSA): iss ztgate-dev,
aud ztgate, sub, roles, iat, exp, jti.
  --sub S          the subject (required)
  --role R         a role; repeat for several
  --ttl D          lifetime: a number with s, m, h or d (default 15m)
  --claim k=v      an extra claim; repeat for several (values: true/false, numbers, text)
  --aud A          the audience (default ztgate)
  --bind-cert FILE bind the token to a client certificate (cnf x5t#S256)
  --dir DIR        the keys directory (default: keys.dir of gateway.yaml)
exit: 0; 1 without the issuer key`,
  policy: `usage: ztgate policy COMMAND …; ztgate policy COMMAND --help
  check [DIR]                      validate every policy file
  explain …                        the decision for one operation, and why
  test [DIR]                       run the policy test cases under DIR/tests/
  diff OLD NEW --replay LOG        replay logged decisions against two policy directories
  suggest --from LOG --asset A     propose least-privilege rules from logged traffic`,
  "policy check": `usage: ztgate policy check [DIR]
Validates every policy file in DIR (default: policy.dir of gateway.yaml); prints
file:line:col: message per error on stderr, or one ok line.
exit: 0 valid, 1 errors`,
  "policy explain": `usage: ztgate policy explain [--policies DIR] --asset A --action ACT (--point P | --target T) [--value V] (--token JWT [--no-verify] [--config F] | --sub S --role R…) [--claim k=v]… [--at ISO] [--from IP] [--json]
Prints the decision for one operation, its rule and reason, and every rule of the asset with
whether it matched and why not.
  --policies DIR   the policy directory (default: policy.dir of gateway.yaml)
  --asset A        the asset
  --action ACT     read, write, call, browse, …
  --point P        a named point, or
  --target T       TABLE:ADDR[-ADDR] (coil, discrete, input, holding; 0-based) or node:NODEID
  --value V        the value written (true/false, a number, text; comma-separated for a range)
  --token JWT      the subject from a token, verified against the issuers of gateway.yaml ...
  --no-verify      ... or only decoded
  --sub S --role R the subject directly (--role repeats)
  --claim k=v      extra claims (repeat)
  --at ISO         the decision time (default now)
  --from IP        the client's address
  --json           {effect, rule, reason, policyRevision, mode, values?, considered[]}
${CONFIG}
exit: 0 allow, 1 deny`,
  "policy test": `usage: ztgate policy test [DIR]
Runs the policy test cases in DIR/tests/*.yaml (DIR default: policy.dir of gateway.yaml);
prints ok / FAIL per case and a summary.
exit: 0 all pass, 1 any fails or a test file is bad`,
  log: `usage: ztgate log COMMAND …; ztgate log COMMAND --help
  verify [DIR] [--key PEM]         check the hash chain and the signed checkpoints
  query [filters] [--format F]     print matching records
  tail [-f] [-n N]                 print the latest records, and with -f new ones`,
  "log verify": `usage: ztgate log verify [DIR] [--key PEM] [--config F]
Checks the decision log's hash chain, seq, checkpoint signatures and head.jws, every segment.
  DIR, --dir DIR   the log directory (default: log.dir of gateway.yaml)
  --key PEM        the gateway's public (or private) signing key (default: log.keyFile of gateway.yaml)
${CONFIG}
A progress line is shown on stderr when it is a terminal.
exit: 0 intact, 1 broken (prints the first bad file:seq and why)`,
  "log query": `usage: ztgate log query [--dir DIR] [--since T] [--until T] [--type T] [--decision allow|deny] [--asset A] [--subject S] [--action A] [--rule R] [--reason R] [--limit N] [--format table|json|csv]
Prints the matching records of the decision log, oldest first.
  --dir DIR        the log directory (default: log.dir of gateway.yaml)
  --since T        from T on: ISO time, or 90s / 15m / 2h / 7d back from now
  --until T        up to T
  --type T         decision, outcome, session, policy or checkpoint
  --decision D     allow or deny
  --asset, --subject, --action, --rule, --reason   exact matches
  --limit N        at most N records
  --format F       table (default), json (the records' lines) or csv
${CONFIG}
exit: 0`,
  "log tail": `usage: ztgate log tail [--dir DIR] [-f] [-n N] [--format table|json]
Prints the last records; with -f, new ones as they are written, until Ctrl-C.
  --dir DIR        the log directory (default: log.dir of gateway.yaml)
  -f, --follow     keep printing new records
  -n, --lines N    how many of the last records (default 10)
  --format F       table (default) or json
${CONFIG}
exit: 0 (also on Ctrl-C)`,
  sim: `usage: ${SIM_USAGE}`,
};

/** Commands that print their own --help. */
const OWN = new Set(["sim", "session", "report", "policy diff", "policy suggest"]);

/** The help text when `argv` asks for it (--help or -h before any `--`), else undefined. */
export function helpFor(argv: readonly string[]): string | undefined {
  const end = argv.indexOf("--");
  const args = end === -1 ? argv : argv.slice(0, end);
  if (!args.includes("--help") && !args.includes("-h")) return undefined;
  const [cmd, sub] = args;
  const two = `${cmd} ${sub}`;
  if (OWN.has(cmd ?? "") || OWN.has(two)) return undefined;
  return HELP[two] ?? HELP[cmd ?? ""];
}
