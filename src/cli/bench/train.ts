/**
 * Training-step benchmark: one Adam step (forward, Tversky + cross-entropy loss, backward,
 * update) of the reference U-Net — base 16, depth 4, 1 input channel, 3 classes, no
 * normalisation, patch 64³, batch 1 — on voxseg and, in the same run, on PyTorch
 * (bench/peer/unet3d_torch.py, `torch.set_num_threads(2)`), both starting from the same
 * weights and the same batch, so their first losses must agree.
 *
 * Two rows: batch 1, and batch 2 (`…batch2`), where PyTorch's CPU convolutions run on oneDNN
 * (at batch 1 most of this network's layers take its slower im2col fallback) — the batch-2
 * row is the fair comparison. Each side of a row runs in its own fresh process (voxseg's: this
 * module as a script; PyTorch's: the peer script), one after the other. Both take the same
 * warm-up steps, untimed; the batch is already normalised and uploaded once, outside the timed
 * steps, on both sides; peak resident memory is that of the timed steps, measured the same
 * way on both (memory.ts). `speedup_vs_torch` is given only when the first losses agree
 * (agreement.ts); otherwise it is null, `agree` false, and `agreement` says how they differ.
 *
 * Gradient clipping is off on both sides (PyTorch's plain `Adam`). A step is timed up to GPU
 * completion; the median is reported. The same batch-1 step with `precision: "f16"` (binary16
 * forward convolution operands) runs in the same suite, from the same weights.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bufferPool, initGpu } from "../../gpu/mod.ts";
import { resolveConfig, type TrainConfig } from "../../train/config.ts";
import { referenceBatch, TrainStepBench } from "../../train/step_timing.ts";
import { type BenchResult, type BenchSuite, median } from "./suite.ts";
import { agreedRatio, lossAgreement } from "./agreement.ts";
import { procStatusMb, resetPeakRss } from "./memory.ts";

/**
 * The interpreter with PyTorch: `VOXSEG_TORCH_PYTHON`, else Debian's `/usr/bin/python3` with
 * `python3-torch` (the first python3 on PATH may lack it).
 */
export const TORCH_PYTHON = Deno.env.get("VOXSEG_TORCH_PYTHON") || "/usr/bin/python3";
export { referenceBatch, TrainStepBench };

const PEER_SCRIPT = new URL("../../../bench/peer/unet3d_torch.py", import.meta.url);

/** The reference network and step, as a resolved training config (flags as on the CLI). */
export function referenceConfig(overrides: Record<string, string> = {}): TrainConfig {
  return resolveConfig(undefined, {
    "model.inChannels": "1",
    "model.classes": "3",
    "model.baseChannels": "16",
    "model.depth": "4",
    "model.convsPerLevel": "2",
    "model.activation": "relu",
    "model.norm": "none",
    "data.patchSize": "64,64,64",
    "data.batchSize": "1",
    "optimizer.kind": "adam",
    "optimizer.lr": "1e-3",
    "optimizer.gradClip": "0",
    ...overrides,
  });
}

/** What bench/peer/unet3d_torch.py printed (its JSON line), or why it did not run. */
export type TorchRun =
  | { ok: true; out: Record<string, unknown> }
  | { ok: false; reason: string };

/**
 * Runs bench/peer/unet3d_torch.py with `args` plus the network and loss flags of `config`
 * (2 threads) and parses its JSON line. `VOXSEG_TORCH_DEVICE` picks the torch device (default
 * cpu); on CUDA, `VOXSEG_TORCH_TF32=1` lets convolutions use TF32 (plain fp32 otherwise).
 */
export async function runUnetTorch(config: TrainConfig, args: string[]): Promise<TorchRun> {
  if (PEER_SCRIPT.protocol !== "file:") {
    return { ok: false, reason: "the peer script exists only in the source tree" };
  }
  const script = fileURLToPath(PEER_SCRIPT);
  try {
    await Deno.stat(script);
  } catch {
    return { ok: false, reason: `${script} not found (run from the source tree)` };
  }
  const m = config.model, l = config.loss;
  if (m.norm !== "none" || m.convsPerLevel !== 2 || m.activation !== "relu") {
    return { ok: false, reason: "the PyTorch peer implements norm none, 2 convs, relu only" };
  }
  const all = [
    script,
    ...args,
    ...["--in-channels", m.inChannels, "--classes", m.classes, "--base", m.baseChannels],
    ...["--depth", m.depth, "--lr", config.optimizer.lr, "--alpha", l.alpha, "--beta", l.beta],
    ...["--smooth", l.smooth, "--threads", 2],
    ...["--device", Deno.env.get("VOXSEG_TORCH_DEVICE") ?? "cpu"],
    ...(Deno.env.get("VOXSEG_TORCH_TF32") === "1" ? ["--tf32"] : []),
  ].map(String);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(TORCH_PYTHON, { args: all, stdout: "piped", stderr: "piped" })
      .output();
  } catch (e) {
    return {
      ok: false,
      reason: `cannot run ${TORCH_PYTHON} (${(e as Error).message}); apt-get install python3-torch`,
    };
  }
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n");
    return { ok: false, reason: `peer exited ${out.code}: ${stderr.at(-1) ?? ""}` };
  }
  try {
    return { ok: true, out: JSON.parse(stdout.split("\n").at(-1)!) };
  } catch {
    return { ok: false, reason: `peer printed no JSON: ${stdout.slice(-200)}` };
  }
}

/** "pytorch 1.13, 2 threads" on the CPU, "pytorch 2.11, cuda, tf32 off" on a GPU. */
export function torchLabel(out: Record<string, unknown>): string {
  const where = out.device && out.device !== "cpu"
    ? `${out.device}, tf32 ${out.tf32 ? "on" : "off"}`
    : `${out.threads} threads`;
  return `pytorch ${out.torch}, ${where}`;
}

/** voxseg's side of one row: step times, losses and peak memory of the timed steps. */
export interface VoxsegSide {
  times: number[];
  /** One per step taken, warm-ups included (each before its update). */
  losses: number[];
  rss_before_mb: number | null;
  rss_peak_mb: number | null;
  params: number;
  adapter: string;
  /** Where it ran: "fresh child process" (as the PyTorch peer) or "bench process". */
  process: string;
}

/**
 * Runs voxseg's side of one row in this process: writes the initial weights and the batch to
 * `dir` (weights_b<B>, batch_b<B>.safetensors) for the peer, takes `warmup` untimed and `steps`
 * timed steps, and measures the peak resident memory of the timed steps as the peer does
 * (memory.ts: reset after the warm-ups, VmHWM after the last step).
 */
export async function voxsegSide(
  config: TrainConfig,
  warmup: number,
  steps: number,
  dir: string,
  where = "bench process",
): Promise<VoxsegSide> {
  const gpu = await initGpu();
  // Idle buffers of an earlier row would stay resident and count in this row's peak.
  bufferPool().trim();
  const bench = new TrainStepBench(config);
  try {
    // The initial weights go to the peer before voxseg's steps change them.
    const files = await bench.peerFiles();
    const tag = `b${config.data.batchSize}`;
    await Deno.writeFile(join(dir, `weights_${tag}.safetensors`), files.weights);
    await Deno.writeFile(join(dir, `batch_${tag}.safetensors`), files.batch);
    await bench.timedSteps(warmup, 0);
    const rssBefore = procStatusMb("VmRSS");
    const peakReset = resetPeakRss();
    const times = await bench.timedSteps(0, steps);
    const rssPeak = peakReset ? procStatusMb("VmHWM") : undefined;
    return {
      times,
      losses: await bench.losses(),
      rss_before_mb: rssBefore ?? null,
      rss_peak_mb: rssPeak ?? null,
      params: bench.model.trainable().reduce((a, p) => a + p.tensor.size, 0),
      adapter: gpu.info.description,
      process: where,
    };
  } finally {
    bench.dispose();
  }
}

/** This module, run as a script: voxseg's side of one row (see {@link voxsegSideInChild}). */
const SIDE_SCRIPT = new URL(import.meta.url);

/**
 * {@link voxsegSide} of the reference step at `batchSize` in a fresh `deno` process, so that
 * its peak memory is taken as the PyTorch peer's is — a new process holding one network, its
 * compiled pipelines and its buffers — and not on top of what earlier rows left in this one.
 * In a compiled binary (no source tree to run) it runs here instead, after freeing the idle
 * buffers; there the PyTorch peer, a script of the source tree, is skipped anyway.
 */
async function voxsegSideInChild(
  batchSize: number,
  warmup: number,
  steps: number,
  dir: string,
): Promise<VoxsegSide> {
  if (Deno.build.standalone || SIDE_SCRIPT.protocol !== "file:") {
    const config = referenceConfig({ "data.batchSize": String(batchSize) });
    return await voxsegSide(config, warmup, steps, dir);
  }
  const args = [
    ...["run", "-A", "--config", fileURLToPath(new URL("../../../deno.json", import.meta.url))],
    fileURLToPath(SIDE_SCRIPT),
    ...[batchSize, warmup, steps, dir].map(String),
  ];
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`voxseg's side of the batch-${batchSize} row exited ${out.code}: ${stderr}`);
  }
  return JSON.parse(stdout.split("\n").at(-1)!);
}

/** One batch size of the reference step on both sides, each in a fresh process. */
async function sideBySide(
  batchSize: number,
  warmup: number,
  steps: number,
  dir: string,
): Promise<BenchResult> {
  const config = referenceConfig({ "data.batchSize": String(batchSize) });
  // Equal warm-ups on both sides; peak memory of the timed steps only, on both.
  const side = await voxsegSideInChild(batchSize, warmup, steps, dir);
  const { losses } = side;
  const ms = median(side.times);
  const tag = `b${batchSize}`;
  const peer = await runUnetTorch(config, [
    ...["--weights", join(dir, `weights_${tag}.safetensors`)],
    ...["--batch", join(dir, `batch_${tag}.safetensors`)],
    ...["--warmup", String(warmup), "--steps", String(steps)],
  ]);
  const peerLosses = peer.ok ? peer.out.losses as number[] : [];
  // First losses, before any update: 1e-3 relative (agreement.ts FIRST_LOSS_TOLERANCE).
  const agreement = peer.ok ? lossAgreement(losses[0], peerLosses[0]) : null;
  const [D, H, W] = config.data.patchSize;
  const m = config.model;
  return {
    name: `train step unet3d base${m.baseChannels} depth${m.depth} ${D}×${H}×${W} ` +
      `batch${batchSize}`,
    ms,
    torch_ms: peer.ok ? peer.out.median_ms as number : null,
    // > 1: voxseg is faster; null when the first losses disagree (agreement.ts).
    speedup_vs_torch: peer.ok && agreement
      ? agreedRatio(peer.out.median_ms as number, ms, agreement)
      : null,
    agree: agreement?.agree ?? null,
    agreement: agreement?.agreement ?? null,
    first_loss: losses[0],
    torch_first_loss: peer.ok ? peerLosses[0] : null,
    last_loss: losses.at(-1)!,
    torch_last_loss: peer.ok ? peerLosses.at(-1)! : null,
    rss_before_mb: side.rss_before_mb,
    rss_peak_mb: side.rss_peak_mb,
    torch_rss_before_mb: peer.ok ? (peer.out.rss_before_mb as number | null) ?? null : null,
    torch_rss_peak_mb: peer.ok ? (peer.out.rss_peak_mb as number | null) ?? null : null,
    voxseg_process: side.process,
    warmup,
    steps,
    params: side.params,
    adapter: side.adapter,
    peer: peer.ok ? torchLabel(peer.out) : "skipped",
    ...(peer.ok ? {} : { peer_skipped: peer.reason }),
  };
}

export const suite: BenchSuite = {
  summary: "one U-Net training step (base 16, depth 4, 64³), batch 1 and 2: voxseg vs PyTorch",
  async *run({ quick }): AsyncIterable<BenchResult> {
    const warmup = quick ? 1 : 2, steps = quick ? 2 : 5;
    const dir = await Deno.makeTempDir({ prefix: "voxseg_bench_train_" });
    try {
      const batch1 = await sideBySide(1, warmup, steps, dir);
      // The same step with binary16 forward convolution operands, from the same weights, in
      // this process (its time is compared with voxseg's f32 step only).
      await initGpu();
      const half = new TrainStepBench(referenceConfig({ precision: "f16" }));
      let halfTimes: number[], halfLosses: number[];
      try {
        halfTimes = await half.timedSteps(warmup, steps);
        halfLosses = await half.losses();
      } finally {
        half.dispose();
      }
      const ms = batch1.ms as number;
      yield {
        ...batch1,
        f16_ms: median(halfTimes),
        // > 1: binary16 forward operands are faster than f32.
        f16_speedup: median(halfTimes) > 0 ? ms / median(halfTimes) : null,
        f16_first_loss: halfLosses[0],
        f16_last_loss: halfLosses.at(-1)!,
      };
      // Batch 2: PyTorch's CPU convolutions take oneDNN above batch 1 (at batch 1 most of
      // this network's layers fall back to its slower im2col path), so this is the fair row.
      yield await sideBySide(2, warmup, steps, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
};

// As a script (voxsegSideInChild): `train.ts <batch> <warmup> <steps> <dir>` prints one
// VoxsegSide as a JSON line.
if (import.meta.main) {
  const [batch, warmup, steps, dir] = Deno.args;
  const config = referenceConfig({ "data.batchSize": batch });
  const side = await voxsegSide(config, Number(warmup), Number(steps), dir, "fresh child process");
  console.log(JSON.stringify(side));
}
