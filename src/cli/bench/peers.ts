/**
 * `voxseg bench peers`: voxseg side by side with other frameworks, in one process and one run,
 * every figure a ratio `ratio` = peer time / voxseg time (> 1: voxseg is faster), printed only
 * when the two sides' results agree within agreement.ts's tolerances (else `agreement` says
 * how they differ and the ratio is null):
 *
 * - PyTorch training step of the reference U-Net (the `train` suite, reused as it is);
 * - PyTorch forward pass of the same network and input (bench/peer/unet3d_torch.py
 *   `--mode forward`), with the largest logit difference;
 * - TF.js WebGPU training step (bench/peer/tfjs.ts), first losses compared;
 * - onnxruntime-node sliding-window inference (bench/peer/ort.ts);
 * - accuracy parity: a short training in voxseg and PyTorch from the same weights on the same
 *   batches, loss curves and held-out Dice compared (bench/peer/parity.ts).
 *
 * A peer that cannot run here (no python3-torch, no WebGPU for TF.js, a script missing from a
 * compiled binary) yields a result with `skipped: "<reason>"`; the suite goes on.
 */

import { join } from "node:path";
import { fromArray, initGpu, readTensors, recorder, scope } from "../../gpu/mod.ts";
import { type BenchResult, type BenchSuite, median } from "./suite.ts";
import { agreedRatio, logitsAgreement } from "./agreement.ts";
import {
  referenceBatch,
  referenceConfig,
  runUnetTorch,
  suite as trainSuite,
  torchLabel,
  TrainStepBench,
} from "./train.ts";

/** The `train` suite's result, renamed to this suite's fields. */
async function* torchTrain(quick: boolean): AsyncIterable<BenchResult> {
  for await (const r of trainSuite.run({ quick })) {
    const ok = typeof r.torch_ms === "number";
    yield {
      name: `pytorch ${r.name}`,
      ms: r.ms,
      peer_ms: r.torch_ms,
      ratio: r.speedup_vs_torch,
      agree: r.agree ?? null,
      agreement: r.agreement ?? null,
      first_loss: r.first_loss,
      peer_first_loss: r.torch_first_loss,
      first_loss_rel_diff: ok
        ? Math.abs(Number(r.torch_first_loss) - Number(r.first_loss)) /
          Math.abs(Number(r.first_loss))
        : null,
      steps: r.steps,
      peer: r.peer,
      adapter: r.adapter,
      ...(ok ? {} : { skipped: r.peer_skipped ?? "PyTorch peer did not run" }),
    };
  }
}

/**
 * Forward pass only (inference, batch 1) of the reference U-Net on the reference batch:
 * voxseg vs PyTorch `inference_mode`, and the largest logit difference relative to the
 * largest logit.
 */
async function* torchForward(quick: boolean): AsyncIterable<BenchResult> {
  const gpu = await initGpu();
  const config = referenceConfig();
  const warmup = quick ? 1 : 2, steps = quick ? 3 : 5;
  const [D, H, W] = config.data.patchSize;
  const name = `pytorch forward unet3d base16 depth4 ${D}×${H}×${W} batch1`;
  const dir = await Deno.makeTempDir({ prefix: "voxseg_bench_peers_" });
  const bench = new TrainStepBench(config);
  const x = fromArray([1, config.model.inChannels, D, H, W], referenceBatch(config).image);
  try {
    const files = await bench.peerFiles();
    await Deno.writeFile(join(dir, "weights.safetensors"), files.weights);
    await Deno.writeFile(join(dir, "batch.safetensors"), files.batch);
    const times: number[] = [];
    let logits: Float32Array | undefined;
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      const y = scope(() => bench.model.forward(x, { training: false }));
      await recorder().sync();
      const ms = performance.now() - t0;
      if (i === 0) [logits] = await readTensors([y]);
      y.dispose();
      if (i >= warmup) times.push(ms);
    }
    const ms = median(times);
    const logitsPath = join(dir, "torch_logits.f32");
    const peer = await runUnetTorch(config, [
      ...["--mode", "forward", "--weights", join(dir, "weights.safetensors")],
      ...["--batch", join(dir, "batch.safetensors"), "--logits-out", logitsPath],
      ...["--warmup", String(warmup), "--steps", String(steps)],
    ]);
    if (!peer.ok) {
      yield { name, ms, adapter: gpu.info.description, skipped: peer.reason };
      return;
    }
    const theirs = new Float32Array((await Deno.readFile(logitsPath)).buffer);
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < logits!.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(logits![i] - theirs[i]));
      maxAbs = Math.max(maxAbs, Math.abs(theirs[i]));
    }
    const peerMs = peer.out.median_ms as number;
    // Logits within 1e-3 of the largest |logit| (agreement.ts LOGITS_TOLERANCE).
    const agreement = logitsAgreement(logits!, theirs);
    yield {
      name,
      ms,
      peer_ms: peerMs,
      // > 1: voxseg is faster; null when the logits disagree beyond the tolerance.
      ratio: agreedRatio(peerMs, ms, agreement),
      agree: agreement.agree,
      agreement: agreement.agreement,
      max_logit_diff_rel: theirs.length === logits!.length ? maxDiff / maxAbs : null,
      steps: warmup + steps,
      peer: torchLabel(peer.out),
      adapter: gpu.info.description,
    };
  } finally {
    x.dispose();
    bench.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A peer module's results, or one `skipped` result when the module cannot load (not in a
 * compiled binary, its npm package missing) or fails.
 */
async function* guarded(
  name: string,
  load: () => AsyncIterable<BenchResult> | Promise<AsyncIterable<BenchResult>>,
): AsyncIterable<BenchResult> {
  try {
    yield* await load();
  } catch (e) {
    yield { name, skipped: `${(e as Error).message}`.split("\n")[0] };
  }
}

/**
 * Imports a peer module of bench/peer/ by a specifier built at run time, so that `deno compile`
 * leaves the peers and their npm packages (TF.js, onnxruntime-node: hundreds of MB) out of the
 * binary; there the import fails and {@link guarded} reports the peer as skipped.
 */
function peerModule(
  name: string,
): Promise<Record<string, (options: { quick: boolean }) => AsyncIterable<BenchResult>>> {
  const url = new URL(`../../../bench/peer/${name}.ts`, import.meta.url);
  return import(url.href);
}

export const suite: BenchSuite = {
  summary: "side-by-side peers: PyTorch, onnxruntime-node, TF.js WebGPU",
  async *run({ quick }): AsyncIterable<BenchResult> {
    yield* guarded("pytorch train step", () => torchTrain(quick));
    yield* guarded("pytorch forward", () => torchForward(quick));
    yield* guarded(
      "tfjs-webgpu train step",
      async () => (await peerModule("tfjs")).tfjsPeer({ quick }),
    );
    yield* guarded(
      "onnxruntime-node sliding-window inference",
      async () => (await peerModule("ort")).ortPeer({ quick }),
    );
    yield* guarded(
      "pytorch accuracy parity",
      async () => (await peerModule("parity")).parityPeer({ quick }),
    );
  },
};
