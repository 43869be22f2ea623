/**
 * `voxseg serve`: the HTTP API (src/server/) on `Deno.serve`. Loopback by default; a
 * non-loopback address needs a bearer token, which then guards every data route. Answers only
 * the Host names it serves (DNS-rebinding guard), optionally over TLS, with a JSON-lines
 * access log. SIGTERM or Ctrl-C stops gracefully: no new work,
 * the GPU work in progress finishes, a running training job writes its last checkpoint and is
 * left `interrupted` (POST /v1/jobs/{id}/resume continues it after a restart), then exit.
 */

import { join } from "node:path";
import { createApp, DEFAULT_MAX_QUEUE, type VoxsegServer } from "../server/app.ts";
import { internalError } from "../server/errors.ts";
import { AccessLog } from "../server/middleware/access_log/access_log.ts";
import {
  type AuthScope,
  parseTokenFile,
  TOKEN_CHARS,
} from "../server/middleware/bearer_auth/bearer_auth.ts";
import { allowedHostName, isFixedHost } from "../server/middleware/host_check/host_check.ts";
import { formatBytes, parseBytes } from "../server/middleware/body_limit/body_limit.ts";
import { parseRetention } from "../server/jobs/retention.ts";
import { type PacsEndpoint, pacsListing, parsePacsFlags } from "../server/pacs.ts";
import { DICOM_PIPELINE } from "../server/pacs_pipeline.ts";
import { servePlanner } from "./serve_planning.ts";
import { choiceFlag, numberFlag, parseNamedFlags } from "./args.ts";
import { UsageError } from "./usage_error.ts";

const HELP = `voxseg serve [--host 127.0.0.1] [--port 8080] [--data-root DIR] [--models DIR]
             [--token-file F] [--allowed-host NAME]… [--tls-cert F --tls-key F]
             [--access-log stderr|-|off|FILE] [--max-body 1GiB] [--memory-budget 2GiB]
             [--queue 16] [--state DIR] [--retain 7d] [--pacs NAME=URL]…

Serves the HTTP API: synchronous prediction, training and prediction jobs with live events,
models, health, Prometheus /metrics and /openapi.json.

  --host ADDR          address to listen on (default 127.0.0.1; any other needs a token)
  --port N             port (default 8080; 0 picks a free one)
  --data-root DIR      every path a client names stays inside DIR (default data)
  --models DIR         checkpoints to serve: NAME.safetensors or NAME/best.safetensors
                       (default <data-root>/models)
  --token-file F       bearer tokens, one per line: "name:token" (the name goes to the access
                       log) or a bare token; # comments (or VOXSEG_TOKEN_FILE)
                       Or one token in VOXSEG_TOKEN. With a token every route but /healthz,
                       /readyz and the dashboard page needs it.
  --token T            the token on the command line (every user sees it in ps; prefer the two
                       above)
  --auth SCOPE         all (default): every data route needs the token; mutating: only
                       POST/DELETE (reads open to anyone who can connect; warns at start)
  --allowed-host NAME  a host name clients use to reach the server (repeatable; or
                       VOXSEG_ALLOWED_HOSTS=a,b). Loopback names and IP addresses are always
                       answered; other Host headers get 421 (a guard against DNS rebinding)
  --tls-cert F         PEM certificate chain: serve HTTPS (with --tls-key)
  --tls-key F          PEM private key
  --access-log DEST    one JSON line per request (client, token name, route, status, job or
                       model, bytes; never paths): stderr (default), - (stdout), off, or a file
  --max-body SIZE      request body limit of NIfTI uploads (default 1GiB; JSON bodies: 1MiB)
  --memory-budget SIZE host memory the synchronous predictions may hold at once (default
                       2GiB): each reserves its share before its body is read, else 503
  --queue N            GPU tasks and queued jobs that may wait (default ${DEFAULT_MAX_QUEUE}); more → 503
  --state DIR          job records and training runs (default <data-root>/.voxseg/jobs)
  --retain AGE         purge finished jobs older than AGE (30m, 12h, 7d): their outputs,
                       pulled studies, run folders and records; interrupted jobs get AGE from
                       the server's start. Checked at start and every AGE/10 (at most hourly).
                       Default: keep everything
  --pacs NAME=URL      a DICOMweb endpoint prediction jobs may name (repeatable; NAME is
                       a-z 0-9 _ -, at most 32). Credentials from the environment only:
                       VOXSEG_PACS_<NAME>_TOKEN, or VOXSEG_PACS_<NAME>_USER and _PASSWORD
                       (NAME upper-cased, - as _), else VOXSEG_DICOMWEB_TOKEN / _USER /
                       _PASSWORD`;

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** What `voxseg serve` was asked for, its flags and environment read and checked. */
export interface ServeOptions {
  host: string;
  port: number;
  dataRoot: string;
  /** --models as given (default `<data root>/models`). */
  modelsDir?: string;
  stateDir?: string;
  tokens: Map<string, string>;
  auth: AuthScope;
  /** True when the token came from --token, which every user of the machine can see. */
  tokenOnCommandLine: boolean;
  allowedHosts: string[];
  tls?: { cert: string; key: string };
  /** Where access-log lines go: stderr, "-" (stdout), "off", or a file. */
  accessLog: string;
  maxBodyBytes: number;
  memoryBudgetBytes: number;
  maxQueue: number;
  /** --retain in milliseconds; undefined keeps every job. */
  retainMs?: number;
  /** The --pacs endpoints, credentials read from the environment. */
  pacs: PacsEndpoint[];
}

const FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
  "data-root": { type: "string" },
  models: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  auth: { type: "string" },
  "allowed-host": { type: "string", multiple: true },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "access-log": { type: "string" },
  "max-body": { type: "string" },
  "memory-budget": { type: "string" },
  queue: { type: "string" },
  state: { type: "string" },
  retain: { type: "string" },
  pacs: { type: "string", multiple: true },
} as const;

export async function main(argv: string[]): Promise<number> {
  const options = await serveOptions(argv);
  warnAboutExposure(options);
  const accessLog = await openAccessLog(options.accessLog);
  const server = await createApp({
    dataRoot: options.dataRoot,
    modelsDir: options.modelsDir,
    stateDir: options.stateDir,
    tokens: options.tokens,
    auth: options.auth,
    allowedHosts: options.allowedHosts,
    accessLog,
    maxBodyBytes: options.maxBodyBytes,
    memoryBudgetBytes: options.memoryBudgetBytes,
    maxQueue: options.maxQueue,
    retainMs: options.retainMs,
    pacsEndpoints: options.pacs,
    pacs: DICOM_PIPELINE,
    planner: servePlanner(),
  });
  server.gpuReady.then(
    () => log(`GPU: ${server.context.gpu()!.description} (${server.context.gpu()!.backend})`),
    (e) => log(`no GPU — predictions and training will fail: ${(e as Error).message}`),
  );
  const http = await listen(server, options);
  await stopOnSignal(server, http);
  await accessLog?.close();
  log("stopped");
  return 0;
}

function log(message: string): void {
  console.error(`voxseg serve: ${message}`);
}

/**
 * Reads and checks the flags (and VOXSEG_TOKEN, VOXSEG_TOKEN_FILE, VOXSEG_ALLOWED_HOSTS, the
 * token and TLS files); every problem is a {@link UsageError} naming the flag.
 */
export async function serveOptions(argv: string[]): Promise<ServeOptions> {
  const { values } = parseNamedFlags(argv, FLAGS, HELP);
  const host = (values.host as string | undefined) ?? "127.0.0.1";
  const port = numberFlag(values.port, "port", 8080, { min: 0, max: 65535, integer: true });
  const tokens = await readTokens(
    values.token as string | undefined,
    values["token-file"] as string | undefined,
  );
  const auth = choiceFlag<AuthScope>(values.auth, "auth", ["all", "mutating"], "all");
  if (values.auth !== undefined && !tokens.size) {
    throw new UsageError(`--auth ${auth} needs a token: set VOXSEG_TOKEN or --token-file`);
  }
  const allowedHosts = allowedHostsOf(values["allowed-host"] as string[] | undefined, host);
  const tls = await readTls(
    values["tls-cert"] as string | undefined,
    values["tls-key"] as string | undefined,
  );
  const { maxBodyBytes, memoryBudgetBytes } = sizeFlags(
    values["max-body"] as string | undefined,
    values["memory-budget"] as string | undefined,
  );
  const maxQueue = numberFlag(values.queue, "queue", DEFAULT_MAX_QUEUE, {
    min: 1,
    max: 100_000,
    integer: true,
  });
  const retain = values.retain as string | undefined;
  const retainMs = retain === undefined ? undefined : usage(() => parseRetention(retain));
  const pacs = usage(() => parsePacsFlags((values.pacs as string[] | undefined) ?? []));
  if (!isLoopback(host) && !tokens.size) {
    throw new UsageError(
      `refusing to listen on ${host} without a token: anyone who can reach it could read ` +
        "scans, train, write files and use the GPU. Set VOXSEG_TOKEN or --token-file " +
        "(or use --host 127.0.0.1).",
    );
  }
  return {
    host,
    port,
    dataRoot: (values["data-root"] as string | undefined) ?? "data",
    modelsDir: values.models as string | undefined,
    stateDir: values.state as string | undefined,
    tokens,
    auth,
    tokenOnCommandLine: values.token !== undefined,
    allowedHosts,
    tls,
    accessLog: (values["access-log"] as string | undefined) ?? "stderr",
    maxBodyBytes,
    memoryBudgetBytes,
    maxQueue,
    retainMs,
    pacs,
  };
}

/** `parse()`, its Error (a --retain or --pacs problem) as a {@link UsageError}. */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw e instanceof Error ? new UsageError(e.message) : e;
  }
}

/** --max-body and --memory-budget in bytes (defaults 1GiB and 2GiB). */
function sizeFlags(
  maxBody = "1GiB",
  memoryBudget = "2GiB",
): { maxBodyBytes: number; memoryBudgetBytes: number } {
  const maxBodyBytes = parseBytes(maxBody);
  if (maxBodyBytes === null) {
    throw new UsageError(`--max-body must be a size such as 1GiB or 500MB, got "${maxBody}"`);
  }
  const memoryBudgetBytes = parseBytes(memoryBudget);
  if (memoryBudgetBytes === null || memoryBudgetBytes < 2 ** 20) {
    throw new UsageError(
      `--memory-budget must be a size such as 2GiB or 512MiB (at least 1MiB; a bare number ` +
        `counts bytes), got "${memoryBudget}"`,
    );
  }
  return { maxBodyBytes, memoryBudgetBytes };
}

/** Warns of a token on the command line and of reads left open by --auth mutating. */
function warnAboutExposure(options: ServeOptions): void {
  if (options.tokenOnCommandLine) {
    log(
      "warning: --token shows the token to every user of this machine (ps, /proc); " +
        "use VOXSEG_TOKEN or --token-file",
    );
  }
  for (const endpoint of options.pacs) {
    const { origin, auth } = pacsListing(endpoint);
    log(`PACS ${endpoint.name}: ${origin}, ${auth === "none" ? "no credentials" : auth}`);
    if (auth !== "none" && origin.startsWith("http:") && !isLoopback(new URL(origin).hostname)) {
      log(
        `warning: PACS ${endpoint.name} is plain http: its ${auth} credentials cross the ` +
          "network unencrypted; use https",
      );
    }
  }
  if (options.retainMs !== undefined) {
    log(`finished jobs are purged ${formatAge(options.retainMs)} after they end`);
  }
  if (options.auth === "mutating") {
    log(
      "warning: --auth mutating leaves every read open to anyone who can connect: job lists " +
        "naming input files, scans and label maps, events, metrics",
    );
  }
}

/** `ms` as the largest whole unit that divides it: 7d, 12h, 90m, 45s. */
function formatAge(ms: number): string {
  for (const [unit, size] of [["d", 86400e3], ["h", 3600e3], ["m", 60e3]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}

/** The line logged once listening: URL, folders, limits, who may call. */
export function listeningLine(
  options: ServeOptions,
  dataRoot: string,
  address: { hostname: string; port: number },
): string {
  const { tokens, auth, allowedHosts } = options;
  const shown = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `listening on ${options.tls ? "https" : "http"}://${shown}:${address.port}/ (data root ` +
    `${dataRoot}, models ${options.modelsDir ?? join(dataRoot, "models")}, body limit ` +
    `${formatBytes(options.maxBodyBytes)}, memory budget ` +
    `${formatBytes(options.memoryBudgetBytes)}, ` +
    (tokens.size
      ? `${tokens.size} token(s) required for ${
        auth === "all" ? "every data route" : "mutating routes"
      }`
      : "no token") +
    (allowedHosts.length ? `, also answering ${allowedHosts.join(", ")}` : "") + ")";
}

/**
 * Puts the app on `Deno.serve`. When that fails the server is shut down first; a TLS pair it
 * cannot use becomes a {@link UsageError}.
 */
async function listen(
  server: VoxsegServer,
  options: ServeOptions,
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  try {
    return Deno.serve({
      hostname: options.host,
      port: options.port,
      ...options.tls,
      onListen: (address) => log(listeningLine(options, server.context.root.real, address)),
      onError: (e) => internalError(e, "the HTTP server"),
    }, server.app.fetch);
  } catch (e) {
    await server.shutdown();
    if (options.tls && !(e instanceof Deno.errors.AddrInUse)) {
      throw new UsageError(
        `--tls-cert/--tls-key: cannot serve TLS with them (${(e as Error).name}); they must be ` +
          "a PEM certificate chain and its PEM private key",
      );
    }
    throw e;
  }
}

/**
 * Serves until SIGTERM or SIGINT, then shuts down gracefully (no new work, GPU work finishes,
 * training checkpoints); a second signal exits at once.
 */
async function stopOnSignal(
  server: VoxsegServer,
  http: Deno.HttpServer<Deno.NetAddr>,
): Promise<void> {
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
}

/** Bearer tokens by name: from the token file, or one named `default` from the flag or env. */
async function readTokens(flag?: string, fileFlag?: string): Promise<Map<string, string>> {
  const envFile = Deno.env.get("VOXSEG_TOKEN_FILE") || undefined;
  const file = fileFlag ?? envFile;
  const single = flag || Deno.env.get("VOXSEG_TOKEN") || undefined;
  if (file && single) {
    throw new UsageError(
      "give the token one way: --token-file (or VOXSEG_TOKEN_FILE), VOXSEG_TOKEN or --token",
    );
  }
  if (!file) {
    if (single !== undefined && !TOKEN_CHARS.test(single)) {
      throw new UsageError(
        `${flag ? "--token" : "VOXSEG_TOKEN"} holds spaces, a line break or non-ASCII ` +
          "characters, which no Authorization header can carry; use visible ASCII only",
      );
    }
    return new Map(single ? [["default", single]] : []);
  }
  const what = `${fileFlag ? "--token-file" : "VOXSEG_TOKEN_FILE"} ${file}`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UsageError(`${what}: cannot read it (${(e as Error).name})`);
  }
  try {
    const tokens = parseTokenFile(text, what);
    if (await openToOthers(file)) {
      console.error(`voxseg serve: warning: ${what} is readable by other users; chmod 600 it`);
    }
    return tokens;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Host names from --allowed-host and VOXSEG_ALLOWED_HOSTS, plus a bound host name. */
function allowedHostsOf(flags: string[] = [], bound: string): string[] {
  const env = (Deno.env.get("VOXSEG_ALLOWED_HOSTS") ?? "").split(",").map((h) => h.trim())
    .filter(Boolean);
  const names = new Set<string>();
  try {
    for (const h of flags) names.add(allowedHostName(h));
    for (const h of env) names.add(allowedHostName(h, "VOXSEG_ALLOWED_HOSTS"));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  // Listening on a name means clients use it.
  const b = bound.toLowerCase();
  if (!isFixedHost(b) && !b.includes(":") && b !== "0.0.0.0") names.add(b);
  return [...names];
}

/** The PEM certificate and key for Deno.serve, or undefined without TLS. */
async function readTls(
  certFile?: string,
  keyFile?: string,
): Promise<{ cert: string; key: string } | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new UsageError("--tls-cert and --tls-key go together: give both PEM files");
  }
  const read = async (file: string, flag: string, marker: RegExp, what: string) => {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new UsageError(`${flag} ${file}: cannot read it (${(e as Error).name})`);
    }
    if (!marker.test(text)) {
      throw new UsageError(`${flag} ${file}: not a PEM file holding ${what}`);
    }
    return text;
  };
  return {
    cert: await read(certFile, "--tls-cert", /-----BEGIN CERTIFICATE-----/, "a certificate"),
    key: await read(keyFile, "--tls-key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/, "a private key"),
  };
}

/** The access log for `dest`: stderr, "-" (stdout), "off", or a file appended to. */
async function openAccessLog(dest: string): Promise<AccessLog | undefined> {
  if (dest === "off") return undefined;
  if (dest === "stderr") return AccessLog.stream(Deno.stderr);
  if (dest === "-") return AccessLog.stream(Deno.stdout);
  let log: AccessLog;
  try {
    log = await AccessLog.file(dest);
  } catch (e) {
    throw new UsageError(
      `--access-log ${dest}: cannot open it for appending (${(e as Error).name})`,
    );
  }
  // A new file is created 0600; one that already existed keeps its mode.
  if (await openToOthers(dest)) {
    console.error(
      `voxseg serve: warning: --access-log ${dest} is readable by other users (it names ` +
        "clients and jobs); chmod 600 it",
    );
  }
  return log;
}

/** True when group or others may read or write `path` (never on Windows, which has no modes). */
async function openToOthers(path: string): Promise<boolean> {
  const mode = (await Deno.stat(path)).mode;
  return mode !== null && (mode & 0o077) !== 0 && Deno.build.os !== "windows";
}
