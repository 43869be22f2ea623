import assert from "node:assert/strict";
import { fromArray, initGpu, readInt, readTensors } from "../../src/gpu/mod.ts";
import { subsample3d } from "../../src/ops/subsample.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** Plain-TS reference: every `s`-th voxel of the three trailing axes of `shape`. */
function subsampleRef(x: ArrayLike<number>, shape: number[], s: number): number[] {
  const [d, h, w] = shape.slice(-3);
  const lead = shape.slice(0, -3).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let n = 0; n < lead; n++) {
    for (let z = 0; z < Math.floor(d / s); z++) {
      for (let y = 0; y < Math.floor(h / s); y++) {
        for (let xx = 0; xx < Math.floor(w / s); xx++) {
          out.push(x[((n * d + s * z) * h + s * y) * w + s * xx]);
        }
      }
    }
  }
  return out;
}

Deno.test(
  "subsample3d: u32 labels at strides 1, 2, 4 match the reference bit for bit",
  opts,
  async () => {
    await initGpu();
    for (
      const [shape, s] of [
        [[2, 4, 6, 10], 2],
        [[3, 8, 4, 12], 4],
        [[1, 5, 7, 9], 2], // odd edges: floor, as max pooling
        [[2, 3, 5, 7], 1],
        [[2, 1, 4, 8, 8], 2], // a channel axis in front
      ] as [number[], number][]
    ) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Uint32Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 0);
      const x = fromArray(shape, data, "u32");
      const y = subsample3d(x, s);
      const want = [...shape.slice(0, -3), ...shape.slice(-3).map((e) => Math.floor(e / s))];
      assert.deepEqual(y.shape, want, `${shape} / ${s}`);
      assert.equal(y.dtype, "u32");
      assert.deepEqual([...await readInt(y)], subsampleRef(data, shape, s), `${shape} / ${s}`);
      x.dispose();
      y.dispose();
    }
  },
);

Deno.test(
  "subsample3d: a hand-made 2×4×4 map at stride 2 keeps the block corners",
  opts,
  async () => {
    await initGpu();
    // z = 0 and z = 1 rows of 4 (x fastest): value = 100z + 10y + x.
    const lab = [];
    for (let z = 0; z < 2; z++) {
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) lab.push(100 * z + 10 * y + x);
    }
    const x = fromArray([1, 2, 4, 4], lab, "u32");
    const y = subsample3d(x, 2);
    assert.deepEqual(y.shape, [1, 1, 2, 2]);
    assert.deepEqual([...await readInt(y)], [0, 2, 20, 22]);
    x.dispose();
    y.dispose();
  },
);

Deno.test(
  "subsample3d: f32 values pass unchanged; bad strides and ranks name the problem",
  opts,
  async () => {
    await initGpu();
    const data = Float32Array.from({ length: 64 }, (_, i) => i * 0.1 - 3);
    const x = fromArray([4, 4, 4], data);
    const y = subsample3d(x, 2);
    const [host] = await readTensors([y]);
    assert.deepEqual([...host], subsampleRef(data, [4, 4, 4], 2));
    assert.throws(() => subsample3d(x, 0), /stride must be a positive integer, got 0/);
    assert.throws(() => subsample3d(x, 1.5), /stride must be a positive integer/);
    assert.throws(() => subsample3d(x, 8), /stride 8 is larger than the volume 4×4×4/);
    const flat = fromArray([4, 4], new Float32Array(16));
    assert.throws(() => subsample3d(flat, 2), /at least 3 axes/);
    for (const t of [x, y, flat]) t.dispose();
  },
);
