/**
 * `voxseg serve`: the HTTP API (src/server/) on `Deno.serve`. Loopback by default; a
 * non-loopback address needs a bearer token. SIGTERM or Ctrl-C stops gracefully: no new work,
 * the GPU work in progress finishes, a running training job writes its last checkpoint and is
 * left `interrupted` (POST /v1/jobs/{id}/resume continues it after a restart), then exit.
 */

import { join } from "node:path";
import { createApp, DEFAULT_MAX_QUEUE } from "../server/app.ts";
import { errorResponse } from "../server/errors.ts";
import { formatBytes, parseBytes } from "../server/middleware/body_limit/body_limit.ts";
import { numberFlag, parseFlags } from "./args.ts";
import { UsageError } from "./main.ts";

const HELP = `voxseg serve [--host 127.0.0.1] [--port 8080] [--data-root DIR] [--models DIR]
             [--token T] [--auth mutating|all] [--max-body 1GiB] [--queue 16] [--state DIR]

Serves the HTTP API: synchronous prediction, training and prediction jobs with live events,
models, health, Prometheus /metrics and /openapi.json.

  --host ADDR        address to listen on (default 127.0.0.1; any other needs a token)
  --port N           port (default 8080; 0 picks a free one)
  --data-root DIR    every path a client names stays inside DIR (default data)
  --models DIR       checkpoints to serve: NAME.safetensors or NAME/best.safetensors
                     (default <data-root>/models)
  --token T          bearer token for mutating routes (or set VOXSEG_TOKEN)
  --auth SCOPE       mutating (default): POST/DELETE need the token; all: every route
  --max-body SIZE    request body limit (default 1GiB)
  --queue N          GPU tasks and queued jobs that may wait (default ${DEFAULT_MAX_QUEUE}); more → 503
  --state DIR        job records and training runs (default <data-root>/.voxseg/jobs)`;

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    host: { type: "string" },
    port: { type: "string" },
    "data-root": { type: "string" },
    models: { type: "string" },
    token: { type: "string" },
    auth: { type: "string" },
    "max-body": { type: "string" },
    queue: { type: "string" },
    state: { type: "string" },
  }, HELP);
  if (positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP}`);
  }
  const host = (values.host as string | undefined) ?? "127.0.0.1";
  const port = numberFlag(values.port, "port", 8080, { min: 0, max: 65535, integer: true });
  const token = (values.token as string | undefined) || Deno.env.get("VOXSEG_TOKEN") || undefined;
  const auth = (values.auth as string | undefined) ?? "mutating";
  if (auth !== "mutating" && auth !== "all") {
    throw new UsageError(`--auth must be mutating or all, got "${auth}"`);
  }
  if (auth === "all" && !token) throw new UsageError("--auth all needs --token or VOXSEG_TOKEN");
  const maxBodyBytes = parseBytes((values["max-body"] as string | undefined) ?? "1GiB");
  if (maxBodyBytes === null) {
    throw new UsageError(
      `--max-body must be a size such as 1GiB or 500MB, got "${values["max-body"]}"`,
    );
  }
  const maxQueue = numberFlag(values.queue, "queue", DEFAULT_MAX_QUEUE, {
    min: 1,
    max: 100_000,
    integer: true,
  });
  if (!isLoopback(host) && !token) {
    throw new UsageError(
      `refusing to listen on ${host} without a token: anyone who can reach it could train, ` +
        "write files and use the GPU. Set --token or VOXSEG_TOKEN (or use --host 127.0.0.1).",
    );
  }
  const dataRoot = (values["data-root"] as string | undefined) ?? "data";

  const server = await createApp({
    dataRoot,
    modelsDir: values.models as string | undefined,
    stateDir: values.state as string | undefined,
    token,
    auth,
    maxBodyBytes,
    maxQueue,
  });
  const log = (message: string) => console.error(`voxseg serve: ${message}`);
  server.gpuReady.then(
    () => log(`GPU: ${server.context.gpu()!.description} (${server.context.gpu()!.backend})`),
    (e) => log(`no GPU — predictions and training will fail: ${(e as Error).message}`),
  );

  const http = Deno.serve({
    hostname: host,
    port,
    onListen: ({ hostname, port }) => {
      const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
      log(
        `listening on http://${shown}:${port}/ (data root ${server.context.root.real}, ` +
          `models ${values.models ?? join(server.context.root.real, "models")}, body limit ` +
          `${formatBytes(maxBodyBytes)}, ` +
          (token
            ? `token required for ${auth === "all" ? "every route" : "mutating routes"})`
            : "no token)"),
      );
    },
    onError: (e) => {
      log(`unhandled error: ${(e as Error).message}`);
      return errorResponse(500, "internal", (e as Error).message);
    },
  }, server.app.fetch);

  let stopping = false;
  const stop = async () => {
    if (stopping) {
      log("second signal: exiting now");
      Deno.exit(1);
    }
    stopping = true;
    log("stopping: no new work; finishing GPU work and checkpointing training…");
    await server.shutdown();
    await http.shutdown();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGTERM", "SIGINT"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  await http.finished;
  for (const s of signals) Deno.removeSignalListener(s, stop);
  log("stopped");
  return 0;
}
