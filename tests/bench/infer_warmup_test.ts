/**
 * The sliding-window benchmark warms both sides up on a volume that is exactly one batch of
 * windows (src/cli/bench/infer.ts, bench/peer/sliding_window_torch.py): the shape must give
 * that many windows in voxseg's window plan.
 */

import { deepStrictEqual, equal } from "node:assert";
import { oneBatchShape } from "../../src/cli/bench/infer.ts";
import { windowStarts } from "../../src/infer/gaussian.ts";

Deno.test("oneBatchShape gives exactly `batch` windows, all along x", () => {
  for (const [patch, overlap, batch] of [[64, 0.5, 2], [64, 0.5, 3], [48, 0.25, 2], [5, 0.5, 4]]) {
    const shape = oneBatchShape([patch, patch, patch], overlap, batch);
    deepStrictEqual(shape.slice(0, 2), [patch, patch]);
    equal(windowStarts(shape[2], patch, overlap).length, batch, `${patch} ${overlap} ${batch}`);
  }
  deepStrictEqual(oneBatchShape([64, 64, 64], 0.5, 2), [64, 64, 96]);
  deepStrictEqual(oneBatchShape([64, 64, 64], 0.5, 1), [64, 64, 64]);
});
