import { throws } from "node:assert";
import { flip } from "../../src/autograd/mod.ts";
import { flipSegments } from "../../src/ops/flip.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { opTest } from "./check_op.ts";

/** Float64 flip of `axes` of a contiguous tensor of `shape`. */
function flipRef(shape: number[], axes: number[]) {
  return ([x]: Float64Array[]) => {
    const y = new Float64Array(x.length);
    const coord = new Array(shape.length).fill(0);
    for (let i = 0; i < x.length; i++) {
      let rest = i;
      for (let k = shape.length - 1; k >= 0; k--) {
        coord[k] = rest % shape[k];
        rest = Math.floor(rest / shape[k]);
      }
      let src = 0;
      for (let k = 0; k < shape.length; k++) {
        src = src * shape[k] + (axes.includes(k) ? shape[k] - 1 - coord[k] : coord[k]);
      }
      y[i] = x[src];
    }
    return y;
  };
}

const odd = [2, 3, 5, 7, 9];
const cases: [number[], number[]][] = [
  [odd, [2, 3, 4]],
  [odd, [4]],
  [odd, [2]],
  [odd, [1, 3]],
  [odd, [0, 2, 4]],
  [odd, []],
  [[1, 2, 4, 4, 4], [2, 3, 4]],
  [[3, 5, 7], [0, 2]],
];
for (const [shape, axes] of cases) {
  opTest({
    name: `flip [${shape}] axes [${axes}]`,
    inputs: [{ shape }],
    run: ([x]) => flip(x, axes),
    reference: flipRef(shape, axes),
  });
}

Deno.test("flipSegments merges adjacent flipped and kept axes and drops size-1 axes", () => {
  const got = JSON.stringify(flipSegments([2, 3, 5, 7, 9], [2, 3, 4]));
  if (got !== JSON.stringify({ dims: [6, 315], flipped: [false, true] })) throw new Error(got);
  const alt = JSON.stringify(flipSegments([1, 3, 5, 7, 9], [0, 2, 4]));
  if (alt !== JSON.stringify({ dims: [3, 5, 7, 9], flipped: [false, true, false, true] })) {
    throw new Error(alt);
  }
});

Deno.test("flip [1,1,257,256,256] axes [2,4]: 65792 workgroups fold into a 2D grid", async () => {
  await initGpu();
  const shape = [1, 1, 257, 256, 256];
  const size = 257 * 256 * 256;
  const x = Float32Array.from({ length: size }, (_, i) => i % 65521);
  const y = scope(() => flip(fromArray(shape, x), [2, 4]));
  const [v] = await readTensors([y]);
  y.dispose();
  for (let i = 0; i < size; i += 13) {
    const [w, h, d] = [i % 256, (i >> 8) % 256, i >> 16];
    const src = ((256 - d) * 256 + h) * 256 + (255 - w);
    if (v[i] !== x[src]) throw new Error(`y[${i}] = ${v[i]}, want x[${src}] = ${x[src]}`);
  }
});

Deno.test("flip rejects axes outside the shape or repeated, printing both", async () => {
  await initGpu();
  scope(() => {
    const x = new Tensor([2, 3, 4, 4, 4]);
    throws(
      () => flip(x, [5]),
      /axes \[5\] must be distinct integers in \[0, 5\).*\[2, 3, 4, 4, 4\]/,
    );
    throws(() => flip(x, [2, 2]), /axes \[2, 2\]/);
    throws(() => flip(x, [-1]), /axes \[-1\]/);
    throws(
      () => flip(new Tensor([2, 2, 2, 2, 2, 2, 2, 2]), [0, 2, 4, 6]),
      /8 runs of flipped and kept axes; at most 6/,
    );
  });
});
