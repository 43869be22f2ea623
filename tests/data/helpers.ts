/** Test helpers for the data layer: temp folders, a static HTTP server, in-process CLI runs. */

import { join, normalize } from "node:path";
import { runCli } from "../../src/cli/main.ts";

/** Runs `fn` with a fresh temp folder, removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "voxseg_data_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Serves `root` over HTTP on 127.0.0.1 (a free port) and counts the paths requested, so tests
 * can assert which chunks a read fetched.
 */
export async function withStaticServer<T>(
  root: string,
  fn: (url: string, requests: string[]) => Promise<T>,
): Promise<T> {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    requests.push(path);
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root))) return new Response("forbidden", { status: 403 });
    try {
      const body = await Deno.readFile(file);
      return new Response(body, { headers: { "content-type": "application/octet-stream" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    return await fn(`http://127.0.0.1:${server.addr.port}`, requests);
  } finally {
    await server.shutdown();
  }
}

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
