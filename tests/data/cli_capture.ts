/** In-process CLI runs with what they print captured, for tests of the commands. */

import { runCli } from "../../src/cli/main.ts";

/** Runs the CLI in-process, capturing what it prints. */
export async function runCliCaptured(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await runCli(argv);
    return { code, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
