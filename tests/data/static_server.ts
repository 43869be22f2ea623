/** A static HTTP server over a folder, for tests that read cases and datasets by URL. */

import { join, normalize } from "node:path";

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
