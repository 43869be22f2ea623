import assert from "node:assert/strict";
import {
  defineKernel,
  fromArray,
  initGpu,
  readTensors,
  recorder,
  Tensor,
  wgslHeader,
} from "../../src/gpu/mod.ts";
import {
  emptyTexelView,
  idleTexelBytes,
  TEXEL_ROW,
  TEXEL_ROW_SHIFT,
  texelTexture,
  trimTexelTextures,
} from "../../src/gpu/texture.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test("wgslHeader declares a texture binding as texture_2d<f32>", () => {
  const h = wgslHeader({
    name: "t",
    body: "",
    uniforms: { n: "u32" },
    bindings: [{ name: "x", access: "read" }, { name: "xt", access: "read", texture: true }],
  });
  assert.match(h, /@binding\(2\) var xt: texture_2d<f32>;/);
  assert.equal(TEXEL_ROW, 2 ** TEXEL_ROW_SHIFT);
  assert.equal((TEXEL_ROW * 16) % 256, 0);
});

Deno.test("defineKernel rejects a writable or typed texture binding", () => {
  const base = { name: "t", body: "", uniforms: {} };
  assert.throws(
    () => defineKernel({ ...base, bindings: [{ name: "a", access: "read_write", texture: true }] }),
    /texture binding a must be read-only/,
  );
  assert.throws(
    () =>
      defineKernel({
        ...base,
        bindings: [{ name: "a", access: "read", texture: true, type: "vec4<f32>" }],
      }),
    /texture binding a must be read-only, without type/,
  );
});

/** Copies texel t of a texel texture to out[t] (vec4s), reading (t % ROW, t / ROW). */
const readTexels = defineKernel({
  name: "test_read_texels",
  body: `
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = threadIndex(wid, nwg, lid);
  if (t >= params.n) { return; }
  out[t] = textureLoad(xt, vec2<u32>(t & ${TEXEL_ROW - 1}u, t >> ${TEXEL_ROW_SHIFT}u), 0);
}
`,
  uniforms: { n: "u32" },
  bindings: [
    { name: "xt", access: "read", texture: true },
    { name: "out", access: "read_write", type: "vec4<f32>" },
  ],
  workgroupSize: 64,
});

/** Floats 0, 1, 2, … as a tensor, and the texels of it that a texel texture holds. */
async function roundTrip(floats: number): Promise<{ want: Float32Array; got: Float32Array }> {
  const want = Float32Array.from({ length: floats }, (_, i) => i);
  const x = fromArray([floats], want);
  const texels = floats / 4;
  const out = new Tensor([floats]);
  const tex = texelTexture(x.buffer, texels);
  recorder().dispatch(readTexels, { n: texels }, [tex.view, out.buffer], readTexels.grid(texels));
  tex.release();
  const [got] = await readTensors([out]);
  x.dispose();
  out.dispose();
  return { want, got };
}

Deno.test(
  "texelTexture: texel t at (t % TEXEL_ROW, t / TEXEL_ROW), whole rows and a partial last one",
  opts,
  async () => {
    await initGpu();
    for (const texels of [1, 7, TEXEL_ROW, TEXEL_ROW + 1, 2 * TEXEL_ROW + 123]) {
      const { want, got } = await roundTrip(4 * texels);
      assert.deepEqual(got, want, `${texels} texels`);
    }
  },
);

Deno.test(
  "texel textures are reused in recording order: a later copy over a released texture does " +
    "not reach the dispatch recorded before it",
  opts,
  async () => {
    await initGpu();
    trimTexelTextures();
    const n = 4 * 300;
    const a = fromArray([n], Float32Array.from({ length: n }, (_, i) => i));
    const b = fromArray([n], Float32Array.from({ length: n }, (_, i) => -i));
    const [outA, outB] = [new Tensor([n]), new Tensor([n])];
    // One batch: copy a, read it, release; copy b into the same texture, read it.
    const ta = texelTexture(a.buffer, n / 4);
    recorder().dispatch(readTexels, { n: n / 4 }, [ta.view, outA.buffer], readTexels.grid(n / 4));
    ta.release();
    const tb = texelTexture(b.buffer, n / 4);
    assert.equal(tb.view, ta.view, "the released texture is taken again");
    recorder().dispatch(readTexels, { n: n / 4 }, [tb.view, outB.buffer], readTexels.grid(n / 4));
    // A second texture while the first is in use.
    const tc = texelTexture(a.buffer, n / 4);
    assert.notEqual(tc.view, tb.view);
    tb.release();
    tc.release();
    tc.release(); // twice is harmless
    const [ga, gb] = await readTensors([outA, outB]);
    assert.deepEqual(ga, Float32Array.from({ length: n }, (_, i) => i));
    assert.deepEqual(gb, Float32Array.from({ length: n }, (_, i) => -i));
    // Two idle textures of one row each; a larger request replaces the larger idle one.
    assert.equal(idleTexelBytes(), 2 * TEXEL_ROW * 16);
    const big = fromArray([4 * (3 * TEXEL_ROW)], new Float32Array(4 * 3 * TEXEL_ROW).fill(2));
    const td = texelTexture(big.buffer, 3 * TEXEL_ROW);
    td.release();
    assert.equal(idleTexelBytes(), TEXEL_ROW * 16 + 3 * TEXEL_ROW * 16);
    trimTexelTextures();
    assert.equal(idleTexelBytes(), 0);
    await recorder().sync();
    for (const t of [a, b, outA, outB, big]) t.dispose();
  },
);

Deno.test(
  "a buffer where a kernel takes a texture view is refused, naming the binding",
  opts,
  async () => {
    await initGpu();
    const out = new Tensor([4]);
    assert.throws(
      () => recorder().dispatch(readTexels, { n: 1 }, [out.buffer, out.buffer], [1, 1, 1]),
      /binding xt takes a texture view/,
    );
    assert.throws(
      () =>
        recorder().dispatch(readTexels, { n: 1 }, [emptyTexelView(), emptyTexelView()], [1, 1, 1]),
      /binding out takes a buffer/,
    );
    out.dispose();
  },
);
