// conv3d_point: the 1×1×1 convolution (K = 1) over a grid of D×H×W voxels,
//
//   y[n, o, v] = b[o] + Σ_i W(o, i) · x[n, i, v],
//
// for the 1×1×1 heads and, through MODE, the transposed convolution with kernel 2 stride 2,
// whose 8 taps become 8 channels per real channel (src/ops/conv_transpose3d.ts):
//   0  x [N, Ci, D, H, W], y [N, Co, D, H, W]
//   1  y is [N, Co/8, 2D, 2H, 2W]: channel o = 8·c + tap lands at (c, 2v + tap)     (convT)
//   2  x is [N, Ci/8, 2D, 2H, 2W] read the same way: channel i = 8·c + tap is x[c, 2v + tap]
//                                                                         (convT input grad)
//
// W comes packed by conv3d_pack.wgsl for tiles of 4·S channels, S = CG·VZ (the K = 1 block of
// src/ops/tuning.ts), and CiPad = Ci rounded up to 4: pw[(tc·CiPad + i)·S + s] holds channels
// tc·4S + 4s .. + 3 of input channel i (zero past Co and Ci).
//
// Each thread owns 4·S output channels × VX voxels of one row, and adds input channels 4 at a
// time, each as Σ_c w[c] ⊗ x_c in the order c = 0 .. 3. A 1×1×1 convolution reuses an input
// value only across output channels and a weight only across voxels, so rows or planes more
// per thread would add sums without saving loads. The kernel is its own module, not a mode
// of conv3d.wgsl: on a CPU adapter LLVM compiles every pipeline in-process, and there the
// 3×3×3 code a K = 1 variant carried (and its 512 sums per thread) made each K = 1 pipeline
// 8–10 s of compilation and several hundred MB of transient memory.

override MODE: u32 = 0u;
override CG: u32 = 2u;
override VZ: u32 = 2u;
// Output voxels along x per thread: 4 or 8.
override VX: u32 = 8u;
// 1: rows are read and written as aligned vec4s (W % 4 == 0); 0: as checked single floats.
override VEC: u32 = 1u;
// Slots of 4 output channels per thread (at most 8).
override S: u32 = CG * VZ;
// 1 (VEC = 1): the input is read from the texel texture `xt`, the input buffer copied
// unchanged into rgba32float texels by src/gpu/texture.ts (vec4 t at texel (t % 4096,
// t / 4096)), instead of from srcv: on a CPU adapter a texel fetch is a 16-byte load per lane
// where a storage load is a loop over the SIMD lanes (see inputBinding in src/ops/tuning.ts).
override TEX: u32 = 0u;
// log2 of the texels per texture row (TEXEL_ROW_SHIFT in src/gpu/texture.ts).
const TEXEL_ROW_SHIFT: u32 = 12u;

// The sums of one slot: voxels x0 .. x0 + 3 in lo, x0 + 4 .. x0 + 7 in hi (VX = 8); column dx
// = the 4 channels of voxel dx.
struct SlotAcc {
  lo: mat4x4<f32>,
  hi: mat4x4<f32>,
}

struct ThreadAcc {
  s0: SlotAcc,
  s1: SlotAcc,
  s2: SlotAcc,
  s3: SlotAcc,
  s4: SlotAcc,
  s5: SlotAcc,
  s6: SlotAcc,
  s7: SlotAcc,
}

// Input channels ci .. ci + 3 of the thread's row: column c = channel ci + c, voxels
// x0 .. x0 + 3 in lo, x0 + 4 .. x0 + 7 in hi.
struct Inputs {
  lo: mat4x4<f32>,
  hi: mat4x4<f32>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Flat thread index → (x tile, channel tile, row, plane, n), x tiles fastest so
  // neighbouring lanes read neighbouring rows. tilesY = H and tilesZ = D here.
  var g = threadIndex(wid, nwg, lid);
  if (g >= params.groups) { return; }
  let tx = g % params.tilesX;
  g /= params.tilesX;
  let tc = g % params.tilesC;
  g /= params.tilesC;
  let y = g % params.tilesY;
  g /= params.tilesY;
  let z = g % params.tilesZ;
  let n = g / params.tilesZ;
  let x0 = tx * VX;

  var acc: ThreadAcc;
  for (var ci = 0u; ci < params.ci; ci += 4u) {
    let r = loadInputs(n, ci, z, y, x0);
    let wb = (tc * params.ciPad + ci) * S;
    acc.s0 = addSlot(acc.s0, wb, r);
    if (S >= 2u) { acc.s1 = addSlot(acc.s1, wb + 1u, r); }
    if (S >= 3u) { acc.s2 = addSlot(acc.s2, wb + 2u, r); }
    if (S >= 4u) { acc.s3 = addSlot(acc.s3, wb + 3u, r); }
    if (S >= 5u) { acc.s4 = addSlot(acc.s4, wb + 4u, r); }
    if (S >= 6u) { acc.s5 = addSlot(acc.s5, wb + 5u, r); }
    if (S >= 7u) { acc.s6 = addSlot(acc.s6, wb + 6u, r); }
    if (S >= 8u) { acc.s7 = addSlot(acc.s7, wb + 7u, r); }
  }

  let o0 = tc * 4u * S;
  storeSlot(acc.s0, n, o0, z, y, x0);
  if (S >= 2u) { storeSlot(acc.s1, n, o0 + 4u, z, y, x0); }
  if (S >= 3u) { storeSlot(acc.s2, n, o0 + 8u, z, y, x0); }
  if (S >= 4u) { storeSlot(acc.s3, n, o0 + 12u, z, y, x0); }
  if (S >= 5u) { storeSlot(acc.s4, n, o0 + 16u, z, y, x0); }
  if (S >= 6u) { storeSlot(acc.s5, n, o0 + 20u, z, y, x0); }
  if (S >= 7u) { storeSlot(acc.s6, n, o0 + 24u, z, y, x0); }
  if (S >= 8u) { storeSlot(acc.s7, n, o0 + 28u, z, y, x0); }
}

// Slot s adds Σ_c pw[w + c·S] ⊗ (input channel c) over the 4 input channels of the step.
fn addSlot(a: SlotAcc, w: u32, r: Inputs) -> SlotAcc {
  let w4 = mat4x4<f32>(pw[w], pw[w + S], pw[w + 2u * S], pw[w + 3u * S]);
  var o = a;
  o.lo = addOuters(a.lo, w4, r.lo);
  if (VX == 8u) { o.hi = addOuters(a.hi, w4, r.hi); }
  return o;
}

// Column dx += Σ_c w[c] · x_c[dx], c in order.
fn addOuters(acc: mat4x4<f32>, w: mat4x4<f32>, x: mat4x4<f32>) -> mat4x4<f32> {
  return addOuter(addOuter(addOuter(addOuter(acc, w[0], x[0]), w[1], x[1]), w[2], x[2]), w[3],
                  x[3]);
}

// Column dx += w · p[dx]: one input row through one weight vec4.
fn addOuter(acc: mat4x4<f32>, w: vec4<f32>, p: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(w, vec4<f32>(p.x), acc[0]),
    fma(w, vec4<f32>(p.y), acc[1]),
    fma(w, vec4<f32>(p.z), acc[2]),
    fma(w, vec4<f32>(p.w), acc[3]),
  );
}

// Input channels ci .. ci + 3 at voxels x0 .. x0 + VX - 1 of row (z, y); zero past Ci and W.
fn loadInputs(n: u32, ci: u32, z: u32, y: u32, x0: u32) -> Inputs {
  if (MODE == 2u && VEC == 1u) { return loadTaps(n, ci, z, y, x0); }
  var r: Inputs;
  r.lo = mat4x4<f32>(inputRow(n, ci, z, y, x0), inputRow(n, ci + 1u, z, y, x0),
                     inputRow(n, ci + 2u, z, y, x0), inputRow(n, ci + 3u, z, y, x0));
  if (VX == 8u) {
    r.hi = mat4x4<f32>(inputRow(n, ci, z, y, x0 + 4u), inputRow(n, ci + 1u, z, y, x0 + 4u),
                       inputRow(n, ci + 2u, z, y, x0 + 4u), inputRow(n, ci + 3u, z, y, x0 + 4u));
  }
  return r;
}

// Voxels x .. x + 3 of input channel ci's row (z, y); zero past Ci and W.
fn inputRow(n: u32, ci: u32, z: u32, y: u32, x: u32) -> vec4<f32> {
  let ok = ci < params.ci;
  let row = xRow(n, min(ci, params.ci - 1u), z, y);
  if (VEC == 1u && MODE != 2u) {
    // W % 4 == 0: a vec4 starting in the row lies wholly inside it.
    return select(vec4<f32>(), inputVec((row + x) / 4u), ok && x < params.w);
  }
  return vec4<f32>(inputAt(ok, row, x), inputAt(ok, row, x + 1u), inputAt(ok, row, x + 2u),
                   inputAt(ok, row, x + 3u));
}

// x at column x of a row (zero outside the row or when the channel is past Ci).
fn inputAt(ok: bool, row: u32, x: u32) -> f32 {
  let step = select(1u, 2u, MODE == 2u);
  return select(0.0, src[row + min(x, params.w - 1u) * step], ok && x < params.w);
}

// Index of x[n, ci, z, y, 0] for the MODE's layout (grid coordinates, in range); MODE 2 steps
// by 2 along x from there.
fn xRow(n: u32, ci: u32, z: u32, y: u32) -> u32 {
  if (MODE == 2u) {
    let tap = ci & 7u;
    let zz = 2u * z + (tap >> 2u);
    let yy = 2u * y + ((tap >> 1u) & 1u);
    let row = ((n * (params.ci >> 3u) + (ci >> 3u)) * 2u * params.d + zz) * 2u * params.h + yy;
    return row * 2u * params.w + (tap & 1u);
  }
  return (((n * params.ci + ci) * params.d + z) * params.h + y) * params.w;
}

// MODE 2, VEC = 1: input channels ci .. ci + 3 (ci a multiple of 4) are taps (b, c) = (0,0),
// (0,1), (1,0), (1,1) of real channel ci / 8 at plane offset a = (ci / 4) & 1, so for the
// coarse row y they are two up-sampled rows read as whole vec4s and split into even (c = 0)
// and odd (c = 1) values: 2·VX/4 vec4 loads for 4 channels instead of 4·VX single floats.
fn loadTaps(n: u32, ci: u32, z: u32, y: u32, x0: u32) -> Inputs {
  let zz = 2u * z + ((ci >> 2u) & 1u);
  // Up-sampled row 0 of the plane, in vec4s (an up-sampled plane is H·W vec4s).
  let plane = ((n * (params.ci >> 3u) + (ci >> 3u)) * 2u * params.d + zz) * params.h * params.w;
  // Up-sampled rows 2y (b = 0) and 2y + 1 (b = 1) from column 2·x0, as vec4 indices.
  let f0 = plane + (2u * y * 2u * params.w + 2u * x0) / 4u;
  let f1 = f0 + params.w / 2u;
  let e = fineVecs(f0, x0);
  let o = fineVecs(f1, x0);
  var r: Inputs;
  r.lo = mat4x4<f32>(
    vec4<f32>(e[0].x, e[0].z, e[1].x, e[1].z), vec4<f32>(e[0].y, e[0].w, e[1].y, e[1].w),
    vec4<f32>(o[0].x, o[0].z, o[1].x, o[1].z), vec4<f32>(o[0].y, o[0].w, o[1].y, o[1].w),
  );
  r.hi = mat4x4<f32>(
    vec4<f32>(e[2].x, e[2].z, e[3].x, e[3].z), vec4<f32>(e[2].y, e[2].w, e[3].y, e[3].w),
    vec4<f32>(o[2].x, o[2].z, o[3].x, o[3].z), vec4<f32>(o[2].y, o[2].w, o[3].y, o[3].w),
  );
  return r;
}

// The VX/2 vec4s of an up-sampled row from vec4 index f (coarse columns x0 + 2k, x0 + 2k + 1
// in vec4 k); zero past W. W % 4 == 0, so a vec4 is wholly in or out.
fn fineVecs(f: u32, x0: u32) -> array<vec4<f32>, 4> {
  var a: array<vec4<f32>, 4>;
  a[0] = select(vec4<f32>(), inputVec(f), x0 < params.w);
  a[1] = select(vec4<f32>(), inputVec(f + 1u), x0 + 2u < params.w);
  if (VX == 8u) {
    a[2] = select(vec4<f32>(), inputVec(f + 2u), x0 + 4u < params.w);
    a[3] = select(vec4<f32>(), inputVec(f + 3u), x0 + 6u < params.w);
  }
  return a;
}

// vec4 t of the input: a texel of xt when TEX = 1, else srcv[t].
fn inputVec(t: u32) -> vec4<f32> {
  if (TEX == 1u) {
    let mask = (1u << TEXEL_ROW_SHIFT) - 1u;
    return textureLoad(xt, vec2<u32>(t & mask, t >> TEXEL_ROW_SHIFT), 0);
  }
  return srcv[t];
}

// Channels o0 .. o0 + 3 of the thread's voxels, plus bias, through the fused activation
// (shaders/lib/conv_store.wgsl).
fn storeSlot(a: SlotAcc, n: u32, o0: u32, z: u32, y: u32, x0: u32) {
  if (o0 >= params.co) { return; }
  let bv = biasVec(o0);
  storeOutputRow(a.lo, bv, n, o0, z, y, x0);
  if (VX == 8u) { storeOutputRow(a.hi, bv, n, o0, z, y, x0 + 4u); }
}
