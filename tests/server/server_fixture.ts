/**
 * Fixtures for the server tests: one temp data root per test module holding a tiny synthetic
 * dataset (`synth`: 3 cases of 16×32×32, one for validation) and a models folder with a tiny
 * random-weight checkpoint (`tiny`), fresh state folders per server, NIfTI bodies, SSE parsing.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { gzip } from "../../src/data/gzip.ts";
import { encodeNifti } from "../../src/data/nifti.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { initGpu } from "../../src/gpu/mod.ts";
import { createApp, type ServerOptions, type VoxsegServer } from "../../src/server/app.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { TINY_CT, writeTinyCheckpoint } from "../fixtures/tiny_checkpoint.ts";

/** GPU buffers, loader workers and SSE timers outlive single tests by design. */
export const testOpts = { sanitizeResources: false, sanitizeOps: false };

export const PATCH: Shape3 = TINY_CT.patchSize;
export const SPACING: Shape3 = TINY_CT.spacingMm;

/** A training config small enough for seconds on the software adapter. */
export const TINY_TRAIN = {
  "model.baseChannels": 4,
  "model.depth": 2,
  "data.patchSize": PATCH,
  "data.batchSize": 2,
  "data.workers": 0,
  epochs: 1,
  itersPerEpoch: 3,
  lossReadbackEvery: 1,
};

export interface Fixture {
  /** The data root (symlinks resolved). */
  root: string;
  models: string;
}

let fixture: Promise<Fixture> | undefined;

/** The module's data root, made on first use and removed when the module unloads. */
export function dataRoot(): Promise<Fixture> {
  fixture ??= (async () => {
    await initGpu();
    const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_server_" }));
    globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
    await generateSynthDataset(join(root, "synth"), {
      cases: 3,
      shape: [16, 32, 32],
      val: 0.34,
      test: 0,
    });
    const models = join(root, "models");
    await saveTinyCheckpoint(join(models, "tiny.safetensors"));
    return { root, models };
  })();
  return fixture;
}

/** The servers' model ({@link TINY_CT}, weights from `seed`), saved at `path`. */
export async function saveTinyCheckpoint(path: string, seed = 0): Promise<void> {
  await writeTinyCheckpoint(path, { ...TINY_CT, seed });
}

/** A server on the module's data root with its own fresh state folder. */
export async function newServer(options: Partial<ServerOptions> = {}): Promise<VoxsegServer> {
  const { root, models } = await dataRoot();
  const stateDir = await Deno.makeTempDir({ dir: root, prefix: ".state_" });
  const server = await createApp({ dataRoot: root, modelsDir: models, stateDir, ...options });
  await server.gpuReady;
  return server;
}

/**
 * An int16 CT-like volume (air outside, tissue inside, a lung-like low-density blob) of an odd
 * shape, with an affine that flips x and y and moves the origin, so geometry mistakes show.
 */
export function ctVolume(shape: Shape3 = [12, 20, 24]): Volume {
  const [D, H, W] = shape;
  const data = new Int16Array(D * H * W);
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const r = Math.hypot((y - H / 2) / (H / 2), (x - W / 2) / (W / 2));
        data[x + W * (y + H * z)] = r > 0.9 ? -1000 : r < 0.4 ? -800 : 40;
      }
    }
  }
  const [sz, sy, sx] = SPACING;
  return {
    shape,
    spacingMm: SPACING,
    affine: [-sx, 0, 0, 90, 0, -sy, 0, 110, 0, 0, sz, -40, 0, 0, 0, 1],
    data,
  };
}

/** NIfTI bytes of a volume, gzipped on request. */
export async function niftiBytes(volume: Volume, gz = false): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = encodeNifti(volume);
  return (gz ? await gzip(bytes) : bytes) as Uint8Array<ArrayBuffer>;
}

/** Asserts an error response: status, JSON content type, `code`; returns the message. */
export async function assertError(res: Response, status: number, code: string): Promise<string> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = JSON.parse(text);
  assert.equal(body.error?.code, code, text);
  assert.equal(typeof body.error.message, "string");
  return body.error.message;
}

export interface SseEvent {
  id?: number;
  event: string;
  data: Record<string, unknown>;
}

/** Reads a server-sent event stream to its end (or until `stop` says so), parsed. */
export async function readEvents(
  res: Response,
  stop: (e: SseEvent) => boolean = () => false,
  onEvent: (e: SseEvent) => void = () => {},
): Promise<SseEvent[]> {
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const fields: Record<string, string> = {};
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          fields[line.slice(0, i)] = line.slice(i + 1).replace(/^ /, "");
        }
        if (fields.data === undefined) continue;
        const e: SseEvent = {
          id: fields.id === undefined ? undefined : Number(fields.id),
          event: fields.event ?? "message",
          data: JSON.parse(fields.data),
        };
        events.push(e);
        onEvent(e);
        if (stop(e)) return events;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return events;
}

/** Polls a job (in process) until it is in one of `states`. */
export async function waitForJob(
  server: VoxsegServer,
  id: string,
  states: Job["state"][],
  timeoutMs = 60_000,
): Promise<Job> {
  const t0 = Date.now();
  while (true) {
    const job = server.context.store.get(id)!;
    if (states.includes(job.state)) return job;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`job ${id} still ${job.state} after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const jsonPost = (body: unknown, headers: Record<string, string> = {}) => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "content-type": "application/json", ...headers },
});
