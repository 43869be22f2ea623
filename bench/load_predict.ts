/**
 * Load run for synchronous prediction (a script, not a test): starts `voxseg serve` on a free
 * loopback port with a tiny random-weight model, sends `--requests` NIfTI volumes at
 * `--concurrency`, checks every label map that comes back (shape, geometry), then sends one
 * burst larger than the GPU queue to show the overflow is answered 503 + Retry-After.
 * Reports latency percentiles and every outcome: nothing may be lost or fail except explicit
 * 503s (exit code 1 otherwise).
 *
 *   deno run -A bench/load_predict.ts [--requests 300] [--concurrency 8] [--shape 16,32,32]
 *                                     [--baseline 20] [--burst 48] [--queue 16] [--json]
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeNifti, encodeNifti } from "../src/data/nifti.ts";
import type { Shape3, Volume } from "../src/data/volume.ts";
import { initGpu } from "../src/gpu/mod.ts";
import { TINY_CT, writeTinyCheckpoint } from "../tests/fixtures/tiny_checkpoint.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    requests: { type: "string", default: "300" },
    concurrency: { type: "string", default: "8" },
    shape: { type: "string", default: "16,32,32" },
    burst: { type: "string", default: "48" },
    baseline: { type: "string", default: "20" },
    queue: { type: "string", default: "16" },
    json: { type: "boolean", default: false },
  },
});
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const burst = Number(values.burst);
const shape = values.shape.split(",").map(Number) as Shape3;

function ctVolume(): Volume {
  const [D, H, W] = shape;
  const data = new Int16Array(D * H * W);
  for (let i = 0; i < data.length; i++) {
    const x = i % W, y = Math.floor(i / W) % H;
    data[i] = Math.hypot(y - H / 2, x - W / 2) < Math.min(H, W) / 4 ? -800 : 40;
  }
  const [sz, sy, sx] = TINY_CT.spacingMm;
  return {
    shape,
    spacingMm: TINY_CT.spacingMm,
    affine: [-sx, 0, 0, 90, 0, -sy, 0, 110, 0, 0, sz, -40, 0, 0, 0, 1],
    data,
  };
}

/** Starts `voxseg serve` and resolves with its base URL once it listens and has a GPU. */
async function startServer(root: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "mod.ts",
      "serve",
      "--port",
      "0",
      "--data-root",
      root,
      "--queue",
      values.queue,
    ],
    cwd: new URL("../", import.meta.url),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let base: string | undefined;
  while (!base || !/GPU: /.test(text)) {
    const { done, value } = await lines.read();
    if (done) throw new Error(`voxseg serve exited:\n${text}`);
    text += value;
    base ??= text.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\//)?.[1];
  }
  (async () => {
    while (!(await lines.read()).done) { /* drain */ }
  })();
  return { child, base };
}

type Outcome = "ok" | "503" | "failed" | "lost";
interface Sample {
  outcome: Outcome;
  ms: number;
  detail?: string;
}

async function predictOnce(
  url: string,
  body: Uint8Array<ArrayBuffer>,
  volume: Volume,
): Promise<Sample> {
  const t0 = performance.now();
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/octet-stream" },
    });
  } catch (e) {
    return { outcome: "lost", ms: performance.now() - t0, detail: (e as Error).message };
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  const ms = performance.now() - t0;
  if (res.status === 503 && res.headers.get("retry-after")) return { outcome: "503", ms };
  if (res.status !== 200) {
    return { outcome: "failed", ms, detail: `${res.status} ${new TextDecoder().decode(bytes)}` };
  }
  const labels = await decodeNifti(bytes);
  const sameGrid = labels.shape.every((s, i) => s === volume.shape[i]) &&
    labels.affine.every((v, i) => Math.abs(v - volume.affine[i]) < 1e-4);
  return sameGrid ? { outcome: "ok", ms } : { outcome: "failed", ms, detail: "wrong geometry" };
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function report(phase: string, samples: Sample[], seconds: number) {
  const ok = samples.filter((s) => s.outcome === "ok").map((s) => s.ms).sort((a, b) => a - b);
  const count = (o: Outcome) => samples.filter((s) => s.outcome === o).length;
  const r = {
    phase,
    requests: samples.length,
    ok: count("ok"),
    rejected_503: count("503"),
    failed: count("failed"),
    lost: count("lost"),
    seconds: +seconds.toFixed(2),
    throughput_rps: +(ok.length / seconds).toFixed(2),
    p50_ms: +percentile(ok, 50).toFixed(1),
    p90_ms: +percentile(ok, 90).toFixed(1),
    p99_ms: +percentile(ok, 99).toFixed(1),
    max_ms: +(ok.at(-1) ?? NaN).toFixed(1),
  };
  if (values.json) console.log(JSON.stringify(r));
  else {
    console.log(
      `${phase.padEnd(34)} ${r.requests} requests: ${r.ok} ok, ${r.rejected_503} × 503, ` +
        `${r.failed} failed, ${r.lost} lost in ${r.seconds} s (${r.throughput_rps} req/s); ` +
        `latency p50 ${r.p50_ms} ms, p90 ${r.p90_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms`,
    );
  }
  for (
    const s of samples.filter((s) => s.outcome === "failed" || s.outcome === "lost").slice(0, 5)
  ) {
    console.error(`  ${s.outcome}: ${s.detail}`);
  }
  return r;
}

const root = await Deno.makeTempDir({ prefix: "voxseg_load_" });
await initGpu();
// The server tests' tiny U-Net (base 4, depth 2, random weights) as the model to serve.
await writeTinyCheckpoint(join(root, "models", "tiny.safetensors"), TINY_CT);
const volume = ctVolume();
const body = encodeNifti(volume) as Uint8Array<ArrayBuffer>;
const { child, base } = await startServer(root);
const url = `${base}/v1/models/tiny/predict`;
let bad = 0;
try {
  // Warm-up: shader compilation and the model load are not part of the figures.
  await predictOnce(url, body, volume);

  const single: Sample[] = [];
  const tb = performance.now();
  for (let i = 0; i < Number(values.baseline); i++) {
    single.push(await predictOnce(url, body, volume));
  }
  const one = report(
    `baseline: concurrency 1, ${shape.join("×")}`,
    single,
    (performance.now() - tb) / 1000,
  );
  bad += one.failed + one.lost;

  const samples: Sample[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < requests) {
      next++;
      samples.push(await predictOnce(url, body, volume));
    }
  }));
  const steady = report(
    `steady: concurrency ${concurrency}, ${shape.join("×")}`,
    samples,
    (performance.now() - t0) / 1000,
  );
  bad += steady.failed + steady.lost;

  const t1 = performance.now();
  const burstSamples = await Promise.all(
    Array.from({ length: burst }, () => predictOnce(url, body, volume)),
  );
  const b = report(
    `burst: ${burst} at once, queue ${values.queue}`,
    burstSamples,
    (performance.now() - t1) / 1000,
  );
  bad += b.failed + b.lost;

  const metrics = await (await fetch(`${base}/metrics`)).text();
  const busy = metrics.match(/^voxseg_gpu_busy_seconds_total (\S+)$/m)?.[1];
  if (!values.json) console.log(`server: GPU busy ${Number(busy).toFixed(1)} s`);
} finally {
  child.kill("SIGTERM");
  await child.status;
  await Deno.remove(root, { recursive: true });
}
if (bad > 0) {
  console.error(`${bad} request(s) failed or were lost`);
  Deno.exit(1);
}
Deno.exit(0);
