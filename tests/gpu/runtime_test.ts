import assert from "node:assert/strict";
import {
  bufferPool,
  defineKernel,
  fromArray,
  grid1d,
  initGpu,
  keep,
  readTensors,
  recorder,
  scope,
  sizeClass,
  type Tensor,
  wgslHeader,
  zeros,
} from "../../src/gpu/mod.ts";
import * as ops from "../../src/ops/mod.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test("sizeClass rounds up with at most 12.5% waste", () => {
  for (const n of [1, 255, 256, 257, 1000, 4096, 5000, 123457, 1 << 24]) {
    const s = sizeClass(n);
    assert.ok(s >= n && s >= 256, `sizeClass(${n}) = ${s}`);
    if (n > 2048) assert.ok(s <= n * 1.125 + 256, `sizeClass(${n}) = ${s} wastes too much`);
  }
  assert.equal(sizeClass(1000), sizeClass(1001));
});

Deno.test("grid1d folds large workgroup counts into x·y ≤ 65535 each", () => {
  assert.deepEqual(grid1d(10), [10, 1, 1]);
  for (const g of [65535, 65536, 200001, 65535 * 65535]) {
    const [x, y] = grid1d(g);
    assert.ok(x <= 65535 && y <= 65535 && x * y >= g, `grid1d(${g}) = ${x}×${y}`);
  }
});

Deno.test("wgslHeader declares the uniform struct and bindings from one definition", () => {
  const h = wgslHeader({
    name: "t",
    body: "",
    uniforms: { n: "u32", alpha: "f32" },
    bindings: [{ name: "x", access: "read" }, { name: "idx", access: "read_write", type: "u32" }],
  });
  assert.match(h, /struct Params \{\n {2}n: u32,\n {2}alpha: f32,\n\};/);
  assert.match(h, /@binding\(1\) var<storage, read> x: array<f32>;/);
  assert.match(h, /@binding\(2\) var<storage, read_write> idx: array<u32>;/);
});

Deno.test("a kernel's workgroup size: WG in its header, its pipeline name and its grid", () => {
  const k = defineKernel({
    name: "t",
    body: "// body\n",
    uniforms: { n: "u32" },
    bindings: [{ name: "x", access: "read" }],
    workgroupSize: 64,
    fragments: ["// first\n", "// second\n"],
    constants: { VX: 8 },
  });
  assert.equal(k.workgroupSize, 64);
  assert.match(k.wgsl, /^override WG: u32 = 64u;$/m);
  assert.match(k.wgsl, /fn threadIndex\(/);
  // The header, then the fragments in their order, then the body.
  const at = (s: string) => k.wgsl.indexOf(s);
  assert.ok(at("var<storage, read> x") < at("// first"));
  assert.ok(at("// first") < at("// second") && at("// second") < at("// body"));
  // The workgroup size names the pipeline like any constant, default or given.
  assert.equal(k.label(), "t[VX=8,WG=64]");
  assert.equal(k.label({ WG: 128 }), "t[VX=8,WG=128]");
  assert.deepEqual(k.grid(64), [1, 1, 1]);
  assert.deepEqual(k.grid(65), [2, 1, 1]);
  assert.deepEqual(k.grid(129, { WG: 128 }), [2, 1, 1]);
  assert.deepEqual(k.grid(64 * 70000), grid1d(70000));
  const single = defineKernel({ name: "one", body: "", uniforms: {}, bindings: [] });
  assert.equal(single.workgroupSize, 1);
  assert.doesNotMatch(single.wgsl, /override WG/);
  assert.throws(
    () => defineKernel({ ...single.spec, workgroupSize: 64, constants: { WG: 64 } }),
    /workgroupSize, not WG/,
  );
  assert.throws(() => defineKernel({ ...single.spec, workgroupSize: 0 }), /positive integer/);
});

Deno.test("upload and readback round-trip, several tensors in one read", opts, async () => {
  await initGpu();
  const a = fromArray([2, 3], [1, 2, 3, 4, 5, 6]);
  const b = zeros([5]);
  const [ha, hb] = await readTensors([a, b]);
  assert.deepEqual([...ha], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...hb], [0, 0, 0, 0, 0]);
  a.dispose();
  b.dispose();
  assert.throws(() => a.buffer, /used after dispose/);
});

Deno.test("scope frees intermediates and keeps what it returns", opts, async () => {
  await initGpu();
  const x = fromArray([4], [-1, 2, -3, 4]);
  let inner: Tensor | undefined;
  let kept: Tensor | undefined;
  const y = scope(() => {
    inner = ops.relu(x);
    kept = keep(ops.add(x, x));
    return ops.mul(inner, x);
  });
  assert.ok(inner!.disposed, "intermediate freed");
  assert.ok(!y.disposed && !kept!.disposed && !x.disposed);
  assert.deepEqual([...(await y.read())].map((v) => v + 0), [0, 4, 0, 16]); // 0·(−1) is −0
  for (const t of [x, y, kept!]) t.dispose();
});

Deno.test("a repeated computation creates no new buffers after its first run", opts, async () => {
  await initGpu();
  const x = fromArray([1, 2, 9, 9, 9], new Float32Array(2 * 729).map((_, i) => i - 700));
  const step = async () => {
    const y = scope(() => ops.relu(ops.add(ops.mul(x, x), x)));
    await y.read();
    y.dispose();
  };
  await step();
  const before = bufferPool().stats().created;
  for (let i = 0; i < 5; i++) await step();
  assert.equal(bufferPool().stats().created, before);
  x.dispose();
});

Deno.test(
  "a dispatch over 16.8M elements folds its grid and covers every element",
  opts,
  async () => {
    await initGpu();
    const n = 65536 * 256 + 7; // more than 65535 workgroups of 256
    const a = fromArray([n], new Float32Array(n).map((_, i) => i % 1000));
    const y = ops.add(a, a);
    const h = await y.read();
    for (const i of [0, 1, 65535 * 256, n - 8, n - 1]) {
      assert.equal(
        h[i],
        2 * (i % 1000),
        `at ${i}`,
      );
    }
    let bad = 0;
    for (let i = 0; i < n; i++) if (h[i] !== 2 * (i % 1000)) bad++;
    assert.equal(bad, 0);
    a.dispose();
    y.dispose();
  },
);

Deno.test("a kernel the device rejects raises a GPU error at the next readback", opts, async () => {
  await initGpu();
  const broken = defineKernel({
    name: "broken-test-kernel",
    body: "@compute @workgroup_size(1) fn main() { let x: u32 = undeclared_name; }",
    uniforms: { n: "u32" },
    bindings: [{ name: "y", access: "read_write" }],
  });
  const y = zeros([4]);
  recorder().dispatch(broken, { n: 4 }, [y.buffer], [1, 1, 1]);
  await assert.rejects(() => y.read(), /GPU error/);
  y.dispose();
});

Deno.test("shape errors name the shapes", opts, async () => {
  await initGpu();
  const a = zeros([2, 3]);
  const b = zeros([3, 2]);
  assert.throws(() => ops.add(a, b), /add: shapes differ, \[2, 3\] vs \[3, 2\]/);
  assert.throws(() => fromArray([2], [1, 2, 3]), /3 values but shape \[2\] needs 2/);
  const limit = (await initGpu()).device.limits.maxStorageBufferBindingSize;
  assert.throws(
    () => zeros([1, 1, limit / 4 + 1]),
    /needs .* MiB but this adapter binds at most .* MiB per storage buffer; lower the patch/,
  );
  a.dispose();
  b.dispose();
});

Deno.test("the profiler times every dispatch per pipeline, past one query set", opts, async () => {
  await initGpu();
  await assert.rejects(recorder().stopProfile(), /no profile was started/);
  const a = fromArray([1000], Array.from({ length: 1000 }, (_, i) => i - 500));
  const before = await readTensors([scope(() => ops.relu(ops.add(a, a)))]);
  recorder().startProfile();
  assert.throws(() => recorder().startProfile(), /already running/);
  // 2 · 1100 timestamps: more than one 4096-query set.
  let y = a;
  for (let i = 0; i < 1100; i++) {
    const next = i % 2 ? ops.relu(y) : ops.add(y, a);
    if (y !== a) y.dispose();
    y = next;
  }
  const profiled = await readTensors([scope(() => ops.relu(ops.add(a, a)))]);
  const times = await recorder().stopProfile();
  y.dispose();
  a.dispose();
  assert.deepEqual(profiled, before, "profiling changed a result");
  const total = times.reduce((s, t) => s + t.dispatches, 0);
  assert.equal(total, 1102);
  assert.ok(times.every((t) => t.ms >= 0 && t.kernel.startsWith("elementwise[")), String(times));
  assert.ok(times.some((t) => t.ms > 0), "no time was measured");
  assert.equal(times.length, 2, "add and relu are two pipelines");
});
