// The environment for a child Node process a test starts (the CLI through tsx, the crash-test
// writer). Without tap's coverage hooks: a tsx-loaded child reports V8 coverage for the same
// source files under different generated code, and merged with the test processes' coverage
// that made tap's report vary from run to run for the same tree.
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // @tapjs/processinfo re-adds its loader to every child, but skips coverage when this is "0".
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, _TAPJS_PROCESSINFO_COVERAGE_: "0" };
  delete env["NODE_V8_COVERAGE"];
  return env;
}
