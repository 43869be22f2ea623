/**
 * Shared pieces of the fault-injection tests: a tiny dataset made by `voxseg synth`, a tiny
 * training config (4 base channels, depth 2, 16³ patches, one loader thread, state written
 * after every step), `voxseg` subprocesses that share one Mesa shader cache (so a restart
 * does not compile its pipelines again), kill -9, and a bit-exact comparison of checkpoints.
 */

import { join } from "node:path";
import { decodeSafetensors } from "../../src/nn/safetensors.ts";
import { CHECKPOINT_KEYS } from "../../src/nn/checkpoint.ts";

const MOD = new URL("../../mod.ts", import.meta.url).pathname;

/** A temp folder for one test, with the shader cache all its processes share. */
export async function workspace(
  prefix: string,
): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await Deno.makeTempDir({ prefix });
  // One cache for every test run of this machine: restarts and later runs read it.
  const cache = join(Deno.env.get("TMPDIR") ?? "/tmp", "voxseg-reliability-shader-cache");
  await Deno.mkdir(cache, { recursive: true });
  return { dir, env: { MESA_SHADER_CACHE_DIR: cache, MESA_SHADER_CACHE_DISABLE: "false" } };
}

/** Runs `voxseg ARGS…` to completion; throws with its output when it fails. */
export async function voxseg(args: string[], env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`voxseg ${args[0]} exited ${out.code}:\n${text}`);
  return text;
}

/** Starts `voxseg ARGS…` in the background, output discarded or piped. */
export function spawnVoxseg(
  args: string[],
  env: Record<string, string>,
  stdout: "null" | "piped" = "null",
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    env,
    stdout,
    stderr: stdout,
  }).spawn();
}

/** `voxseg synth`: 3 cases of 16×32×32 (2 train, 1 val), in `dir`. */
export async function tinyDataset(dir: string, env: Record<string, string>): Promise<string> {
  await voxseg(
    ["synth", "--out", dir, "--cases", "3", "--shape", "16,32,32", "--seed", "1"],
    env,
  );
  return dir;
}

/** The tiny run's config fields, as a job request's `config` and as flags. */
export function tinyConfig(epochs: number, itersPerEpoch: number): Record<string, string> {
  return {
    "model.baseChannels": "4",
    "model.depth": "2",
    "data.patchSize": "16,16,16",
    "data.batchSize": "1",
    "data.workers": "0",
    epochs: String(epochs),
    itersPerEpoch: String(itersPerEpoch),
    lossReadbackEvery: "1",
    checkpointEvery: "1",
  };
}

/** The same as `--name value` flags. */
export function asFlags(config: Record<string, string>): string[] {
  return Object.entries(config).flatMap(([k, v]) => [`--${k}`, v]);
}

/** kill -9, then waits for the process to be gone. */
export async function kill9(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already exited
  }
  await child.status;
}

/** The generation stamped on a run folder's `last.optim.safetensors`; 0 when absent or old. */
export async function committedGeneration(runDir: string): Promise<number> {
  try {
    const bytes = await Deno.readFile(join(runDir, "last.optim.safetensors"));
    return Number(decodeSafetensors(bytes).metadata[CHECKPOINT_KEYS.generation] ?? 0);
  } catch {
    return 0;
  }
}

/** Resolves when `ready()` holds, polling every `everyMs`; false after `timeoutMs`. */
export async function until(
  ready: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 20,
): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (await ready()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

/**
 * The raw bytes of every tensor in a safetensors file, by name: two files are bit-identical
 * in their weights when these maps are equal (metadata such as timings may differ).
 */
export async function tensorBytes(path: string): Promise<Map<string, Uint8Array>> {
  const { tensors } = decodeSafetensors(await Deno.readFile(path));
  return new Map(
    [...tensors].map(([name, t]) => [
      name,
      new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    ]),
  );
}

/** Names of the tensors whose bytes differ between two files (empty: bit for bit equal). */
export async function differingTensors(a: string, b: string): Promise<string[]> {
  const [x, y] = [await tensorBytes(a), await tensorBytes(b)];
  const names = new Set([...x.keys(), ...y.keys()]);
  return [...names].filter((n) => {
    const u = x.get(n), v = y.get(n);
    return !u || !v || u.length !== v.length || u.some((byte, i) => byte !== v[i]);
  });
}

/** A `voxseg serve` subprocess and where it listens. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  base: string;
  /** Everything it printed so far. */
  output(): string;
}

/** Starts `voxseg serve --port 0 ARGS…` and waits for its "listening on …" line. */
export async function startServer(
  args: string[],
  env: Record<string, string>,
): Promise<ServerProcess> {
  const child = spawnVoxseg(["serve", "--port", "0", ...args], env, "piped");
  let text = "";
  const read = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  read(child.stdout);
  read(child.stderr);
  let port: string | undefined;
  const listening = await until(() => {
    port = /listening on http:\/\/[^ ]*:(\d+)\//.exec(text)?.[1];
    return port !== undefined;
  }, 120_000);
  if (!listening) {
    await kill9(child);
    throw new Error(`voxseg serve did not start:\n${text}`);
  }
  return { child, base: `http://127.0.0.1:${port}`, output: () => text };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A checkpoint commit is under way: a generation's temp file or not-yet-renamed file. */
export function committing(runDir: string): boolean {
  try {
    for (const e of Deno.readDirSync(runDir)) {
      if (/^\.?last\.g\d+\./.test(e.name)) return true;
    }
  } catch {
    // the run folder does not exist yet
  }
  return false;
}
