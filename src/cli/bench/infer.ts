/**
 * Inference benchmarks:
 *
 * - `infer`: the reference U-Net (base 16, depth 4, 3 classes, random weights, patch 64³)
 *   segments a 128×256×256 volume (`--quick`: 64×128×128) by sliding window, overlap 0.5,
 *   batches of 2 — voxels per second end to end (sliding window, blending, arg-max) and the
 *   peak resident memory of the timed prediction, run in a fresh process as the peer is; then,
 *   in the same run, the identical network and sliding window in PyTorch
 *   (bench/peer/sliding_window_torch.py, 2 threads), with the share of voxels whose labels
 *   agree; and the same prediction with binary16 convolution operands (`precision: "f16"`):
 *   its time and its label agreement with f32.
 * - `hd95`: HD95 and the other metrics between two lung-like masks of 128×256×256.
 * - `memory`: `voxseg infer` in a fresh process on OME-Zarr cases of 150×512×512 and
 *   600×512×512 int16 (`--quick`: 64 and 128 slices) with a tiny U-Net and the default memory
 *   budget (1 GiB): the child's peak resident memory (VmHWM from /proc, sampled every 100 ms)
 *   must stay flat as the volume grows, and under the budget, while whole-volume float
 *   blending of the larger case would need 2.5 GB.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bufferPool, initGpu } from "../../gpu/mod.ts";
import { writeCase } from "../../data/ome_zarr/writer.ts";
import { Random } from "../../base/random.ts";
import type { Shape3, Volume } from "../../data/volume.ts";
import { segmentationMetrics } from "../../infer/metrics.ts";
import {
  DEFAULT_MEMORY_BUDGET,
  type LoadedModel,
  loadModel,
  predictVolume,
} from "../../infer/predict.ts";
import { UNet3D } from "../../nn/unet3d.ts";
import type { CheckpointMeta } from "../../nn/checkpoint.ts";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import { encodeSafetensors } from "../../nn/safetensors.ts";
import { readWeights } from "../../nn/weights.ts";
import { type BenchResult, type BenchSuite, selfArgs } from "./suite.ts";
import { TORCH_PYTHON } from "./train.ts";
import { procStatusMb, resetPeakRss } from "./memory.ts";
import { agreedRatio, labelsAgreement } from "./agreement.ts";

const PEER_SCRIPT = new URL("../../../bench/peer/sliding_window_torch.py", import.meta.url);
const MB = 1e6;

/** The checkpoint metadata of a benchmark network: CT window, three classes, untrained. */
export function checkpointMeta(
  net: UNet3D,
  patchSize: Shape3,
  spacingMm: Shape3,
): CheckpointMeta {
  return {
    model: net.config,
    classNames: ["background", "lung", "infection"],
    normalisation: { kind: "ct-window", lo: -1000, hi: 400 },
    patchSize,
    spacingMm,
    training: { epoch: 0, step: 0, monitor: "dice", bestMetric: null, metrics: {} },
  };
}

/**
 * A chest-CT-like volume in HU, cheap to make at any size: air, an elliptic body (40 HU), two
 * lungs (−850 HU) and a lesion (−300 HU), mild noise. Labels 0 / 1 lung / 2 lesion.
 */
export function phantomCt(
  shape: Shape3,
  spacingMm: Shape3,
  seed = 0,
): { image: Volume; label: Uint8Array } {
  const [D, H, W] = shape;
  const rng = new Random(seed);
  const noise = Int16Array.from({ length: 4096 }, () => Math.round(rng.normal(0, 20)));
  const data = new Int16Array(D * H * W);
  const label = new Uint8Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    const u = (z + 0.5) / D - 0.5;
    for (let y = 0; y < H; y++) {
      const v = (y + 0.5) / H - 0.5;
      for (let x = 0; x < W; x++, i++) {
        const w = (x + 0.5) / W - 0.5;
        const body = (v / 0.35) ** 2 + (w / 0.45) ** 2 < 1;
        const lung = Math.abs(u) < 0.42 &&
          ((v / 0.25) ** 2 + ((Math.abs(w) - 0.2) / 0.17) ** 2 < 1);
        const lesion = lung && (u - 0.1) ** 2 + (v + 0.05) ** 2 + (w - 0.22) ** 2 < 0.004;
        label[i] = lesion ? 2 : lung ? 1 : 0;
        const hu = lesion ? -300 : lung ? -850 : body ? 40 : -1000;
        data[i] = hu + noise[Math.imul(i, 2654435761) >>> 20];
      }
    }
  }
  const [sz, sy, sx] = spacingMm;
  return {
    image: { shape, spacingMm, affine: [sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 0, 0, 0, 0, 1], data },
    label,
  };
}

type PeerResult =
  | {
    ok: true;
    seconds: number;
    rssPeakMb: number;
    torch: string;
    threads: number;
    labels: Uint8Array;
  }
  | { ok: false; reason: string };

async function runTorchPeer(
  dir: string,
  net: UNet3D,
  shape: Shape3,
  patch: Shape3,
  padValue: number,
): Promise<PeerResult> {
  if (PEER_SCRIPT.protocol !== "file:") {
    return { ok: false, reason: "the peer script exists only in the source tree" };
  }
  const script = fileURLToPath(PEER_SCRIPT);
  const c = net.config;
  const labelsPath = join(dir, "torch_labels.u8");
  const args = [
    script,
    ...["--weights", join(dir, "weights.safetensors"), "--volume", join(dir, "volume.safetensors")],
    ...[
      "--classes",
      c.classes,
      "--base",
      c.baseChannels,
      "--depth",
      c.depth,
      "--patch",
      patch.join(","),
    ],
    ...[
      "--overlap",
      0.5,
      "--batch",
      2,
      "--pad-value",
      padValue,
      "--threads",
      2,
      "--labels-out",
      labelsPath,
      // One argument: argparse would read a separate "-1000,400" as an option.
      "--window=-1000,400",
      "--warmup",
      1,
    ],
  ].map(String);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(TORCH_PYTHON, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    return {
      ok: false,
      reason: `cannot run ${TORCH_PYTHON} (${(e as Error).message}); apt-get install python3-torch`,
    };
  }
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n");
    return { ok: false, reason: `peer exited ${out.code}: ${stderr.at(-1) ?? ""}` };
  }
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  const labels = await Deno.readFile(labelsPath);
  if (labels.length !== shape[0] * shape[1] * shape[2]) {
    return { ok: false, reason: "peer wrote labels of the wrong size" };
  }
  return {
    ok: true,
    seconds: r.seconds,
    rssPeakMb: r.rss_peak_mb,
    torch: r.torch,
    threads: r.threads,
    labels,
  };
}

/**
 * A volume shape whose sliding window is exactly one batch of `batch` windows: the patch, x
 * widened by `batch − 1` steps (the warm-up both sides of {@link throughput} run).
 */
export function oneBatchShape(patch: Shape3, overlap: number, batch: number): Shape3 {
  const step = Math.max(1, Math.floor(patch[2] * (1 - overlap)));
  return [patch[0], patch[1], patch[2] + (batch - 1) * step];
}

const PATCH: Shape3 = [64, 64, 64];
const OVERLAP = 0.5;
const BATCH = 2;

/** voxseg's f32 side of the throughput row (see {@link voxsegInferSide}). */
export interface InferSide {
  seconds: number;
  windows: number;
  rss_before_mb: number | null;
  rss_peak_mb: number | null;
  /** Where it ran: "fresh child process" (as the PyTorch peer) or "bench process". */
  process: string;
}

/**
 * voxseg's f32 prediction of the `shape` phantom with the checkpoint at `model`, in this
 * process: a warm-up as the peer's (one whole prediction of a volume that is exactly one batch
 * of 2 windows; it compiles the pipelines and fills the buffer pool), then the timed
 * prediction with its peak resident memory taken as the peer takes its own (reset right
 * before, read right after). Writes the labels to `labelsOut`.
 */
export async function voxsegInferSide(
  model: string,
  shape: Shape3,
  labelsOut: string,
  where = "bench process",
): Promise<InferSide> {
  await initGpu();
  // Idle buffers of earlier work would stay resident and count in this peak.
  bufferPool().trim();
  const loaded = await loadModel(model);
  try {
    const { image } = phantomCt(shape, [1, 1, 1]);
    const patch = loaded.meta.patchSize as Shape3;
    const warm = phantomCt(oneBatchShape(patch, OVERLAP, BATCH), [1, 1, 1]).image;
    await predictVolume(loaded, warm, { overlap: OVERLAP, batchSize: BATCH });
    const rssBefore = procStatusMb("VmRSS");
    const peakReset = resetPeakRss();
    const { labels, summary } = await predictVolume(loaded, image, {
      overlap: OVERLAP,
      batchSize: BATCH,
    });
    const rssPeak = peakReset ? procStatusMb("VmHWM") : undefined;
    const data = labels.data;
    await Deno.writeFile(labelsOut, data instanceof Uint8Array ? data : Uint8Array.from(data));
    return {
      seconds: summary.seconds,
      windows: summary.windows ?? 0,
      rss_before_mb: rssBefore ?? null,
      rss_peak_mb: rssPeak ?? null,
      process: where,
    };
  } finally {
    loaded.dispose();
  }
}

/** This module, run as a script: voxseg's side of the throughput row. */
const SIDE_SCRIPT = new URL(import.meta.url);

/**
 * {@link voxsegInferSide} in a fresh `deno` process, so that its peak memory is taken as the
 * PyTorch peer's is (a new process holding one network, its pipelines and its buffers), as
 * `bench train` does. In a compiled binary (no source tree to run) it runs here instead, after
 * freeing the idle buffers; there the PyTorch peer, a script of the source tree, is skipped.
 */
export async function voxsegInferSideInChild(
  model: string,
  shape: Shape3,
  labelsOut: string,
): Promise<InferSide> {
  if (Deno.build.standalone || SIDE_SCRIPT.protocol !== "file:") {
    return await voxsegInferSide(model, shape, labelsOut);
  }
  const args = [
    ...["run", "-A", "--config", fileURLToPath(new URL("../../../deno.json", import.meta.url))],
    fileURLToPath(SIDE_SCRIPT),
    ...[model, shape.join(","), labelsOut],
  ];
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`voxseg's side of the inference row exited ${out.code}: ${stderr}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/** voxseg vs PyTorch on the reference network; see the module comment. */
async function throughput(shape: Shape3, adapter: string): Promise<BenchResult> {
  const patch = PATCH;
  const net = new UNet3D(
    { inChannels: 1, classes: 3, baseChannels: 16, depth: 4, norm: "none" },
    0,
  );
  const loaded: LoadedModel = {
    model: net,
    meta: checkpointMeta(net, patch, [1, 1, 1]),
    dispose: () => net.dispose(),
  };
  const { image } = phantomCt(shape, [1, 1, 1]);
  const dir = await Deno.makeTempDir({ prefix: "voxseg_bench_infer_" });
  try {
    const weights = await readWeights(net);
    const model = join(dir, "reference.safetensors");
    await saveCheckpoint(model, { weights, meta: loaded.meta });
    // voxseg's timed f32 prediction, in a process of its own as the peer's.
    const side = await voxsegInferSideInChild(model, shape, join(dir, "voxseg_labels.u8"));
    const labels = await Deno.readFile(join(dir, "voxseg_labels.u8"));
    const voxels = shape[0] * shape[1] * shape[2];

    // The same prediction with binary16 convolution operands, here (own warm-up); its time is
    // compared with the f32 child's, each after a warm-up.
    const warm = phantomCt(oneBatchShape(patch, OVERLAP, BATCH), [1, 1, 1]).image;
    const options = { overlap: OVERLAP, batchSize: BATCH, precision: "f16" as const };
    await predictVolume(loaded, warm, options);
    const half = await predictVolume(loaded, image, options);
    let halfSame = 0;
    for (let i = 0; i < voxels; i++) if (half.labels.data[i] === labels[i]) halfSame++;

    // The peer gets the same weights and the volume in HU: the CT window (HU → [0, 1]) is
    // inside both timers, as predictVolume applies it inside voxseg's; both warm up alike.
    await Deno.writeFile(join(dir, "weights.safetensors"), encodeSafetensors(weights));
    await Deno.writeFile(
      join(dir, "volume.safetensors"),
      encodeSafetensors({ image: { shape: [...shape], data: Float32Array.from(image.data) } }),
    );
    const peer = await runTorchPeer(dir, net, shape, patch, 0);
    let agree: number | null = null;
    let agreement = null;
    if (peer.ok) {
      let same = 0;
      for (let i = 0; i < voxels; i++) if (peer.labels[i] === labels[i]) same++;
      agree = same / voxels;
      // At least 99.9 % of the labels equal (agreement.ts LABELS_TOLERANCE).
      agreement = labelsAgreement(labels, peer.labels);
    }
    return {
      name: `infer unet3d base16 depth4 patch 64³ overlap 0.5 ${shape.join("×")}`,
      seconds: side.seconds,
      voxels_per_s: voxels / side.seconds,
      windows: side.windows,
      rss_before_mb: side.rss_before_mb,
      rss_peak_mb: side.rss_peak_mb,
      voxseg_process: side.process,
      torch_seconds: peer.ok ? peer.seconds : null,
      torch_voxels_per_s: peer.ok ? voxels / peer.seconds : null,
      torch_rss_peak_mb: peer.ok ? peer.rssPeakMb : null,
      // > 1: voxseg is faster; null when the labels disagree beyond the tolerance.
      speedup_vs_torch: peer.ok && agreement
        ? agreedRatio(peer.seconds, side.seconds, agreement)
        : null,
      label_agreement_vs_torch: agree,
      agree: agreement?.agree ?? null,
      agreement: agreement?.agreement ?? null,
      f16_seconds: half.summary.seconds,
      // > 1: binary16 operands are faster than f32.
      f16_speedup: side.seconds / half.summary.seconds,
      f16_label_agreement: halfSame / voxels,
      adapter,
      peer: peer.ok ? `pytorch ${peer.torch}, ${peer.threads} threads` : "skipped",
      ...(peer.ok ? {} : { peer_skipped: peer.reason }),
    };
  } finally {
    net.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Metric time on a 128×256×256 pair of masks: a phantom's labels and a shifted copy. */
function metricsTime(): BenchResult {
  const shape: Shape3 = [128, 256, 256];
  const { label: ref } = phantomCt(shape, [2.4, 1.5, 1.5], 1);
  const pred = new Uint8Array(ref.length);
  pred.set(ref.subarray(3 * 256), 0); // shifted by 3 rows in y
  const t0 = performance.now();
  const [lung, lesion] = segmentationMetrics(pred, ref, shape, [2.4, 1.5, 1.5], [1, 2]);
  const seconds = (performance.now() - t0) / 1000;
  return {
    name: "metrics (dice, hd95, precision, recall, volumes) 2 classes 128×256×256",
    seconds,
    lung_dice: lung.dice,
    lung_hd95_mm: lung.hd95Mm,
    lesion_hd95_mm: lesion.hd95Mm,
  };
}

/**
 * `voxseg infer` (default memory budget) on a `depth`×512×512 case in a child process; its
 * peak RSS. Run at two depths: with slab-wise prediction the peak must not grow with depth.
 */
async function memoryCheck(depth: number): Promise<BenchResult> {
  const shape: Shape3 = [depth, 512, 512];
  const spacing: Shape3 = [1, 0.7, 0.7];
  const patch: Shape3 = [32, 128, 128];
  const dir = await Deno.makeTempDir({ prefix: "voxseg_bench_infer_memory_" });
  try {
    const casePath = join(dir, "big.zarr");
    await writeCase(casePath, { image: phantomCt(shape, spacing, 2).image, chunks: 64 });
    const net = new UNet3D({ baseChannels: 4, depth: 2, classes: 3 }, 0);
    const model = join(dir, "tiny.safetensors");
    await saveCheckpoint(model, {
      weights: await readWeights(net),
      meta: checkpointMeta(net, patch, spacing),
    });
    net.dispose();
    const cli = [
      ...["infer", "--model", model, "--in", casePath, "--out-group"],
      ...["--overlap", "0.25", "--json"],
    ];
    const args = selfArgs(cli);
    const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .spawn();
    let peak: number | undefined;
    const timer = setInterval(() => {
      const hwm = procStatusMb("VmHWM", child.pid);
      if (hwm !== undefined) peak = Math.max(peak ?? 0, hwm);
    }, 100);
    const t0 = performance.now();
    const out = await child.output();
    clearInterval(timer);
    const seconds = (performance.now() - t0) / 1000;
    if (!out.success) {
      throw new Error(
        `voxseg infer failed (exit ${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`,
      );
    }
    const done = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    const voxels = shape[0] * shape[1] * shape[2];
    return {
      name: `infer memory ${shape.join("×")} int16 case, tiny U-Net, patch ${patch.join("×")}`,
      rss_peak_mb: peak ?? null,
      budget_mb: DEFAULT_MEMORY_BUDGET / MB,
      under_budget: peak === undefined ? null : peak * MB < DEFAULT_MEMORY_BUDGET,
      // What whole-volume blending holds: float image + float probabilities of 3 classes.
      whole_volume_float_mb: (voxels * 4 * (1 + 3)) / MB,
      image_int16_mb: (voxels * 2) / MB,
      seconds,
      windows: done.windows,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export const suite: BenchSuite = {
  summary: "sliding-window inference voxels/s and RSS vs PyTorch; HD95 time; RSS vs budget",
  async *run({ quick }): AsyncIterable<BenchResult> {
    const gpu = await initGpu();
    yield await throughput(quick ? [64, 128, 128] : [128, 256, 256], gpu.info.description);
    yield metricsTime();
    for (const depth of quick ? [64, 128] : [150, 600]) yield await memoryCheck(depth);
  },
};

if (import.meta.main) {
  const [model, shape, labelsOut] = Deno.args;
  const dims = shape.split(",").map(Number) as Shape3;
  console.log(
    JSON.stringify(await voxsegInferSide(model, dims, labelsOut, "fresh child process")),
  );
}
