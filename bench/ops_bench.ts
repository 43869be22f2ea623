/**
 * `deno bench` over the same kernel cases as `voxseg bench ops` (src/cli/bench/ops.ts).
 * Each iteration records one call and waits for the GPU.
 */

import { fromArray, initGpu, recorder, scope } from "../src/gpu/mod.ts";
import { opCases } from "../src/cli/bench/ops.ts";
import { Random } from "../src/base/random.ts";

await initGpu();
const rng = new Random(1);

for (const c of opCases()) {
  const inputs = c.inputs.map((shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fromArray(shape, Float32Array.from({ length: n }, () => rng.normal()));
  });
  // One call, everything it creates freed (so calls reuse pooled buffers).
  const run = () =>
    scope(() => {
      c.call(inputs);
    });
  run();
  await recorder().sync();
  Deno.bench({
    name: c.name,
    group: c.name.split(" ")[0],
    n: 3,
    warmup: 1,
    async fn() {
      run();
      await recorder().sync();
    },
  });
}
