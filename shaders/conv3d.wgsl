// conv3d: direct convolution, stride 1, kernel 3, "same" padding, over a grid of D×H×W voxels:
//
//   y[n, o, v] = b[o] + Σ_i Σ_t W(o, i, t) · x[n, i, v + t - 1]      t = (kz, ky, kx)
//
// W comes packed by conv3d_pack.wgsl, pw[((tc·Ci + i)·27 + t)·GW + j] = W(tc·GW + j, i, t),
// zero past Co, for tiles of GW = 4·CG channels: the channels of a tap are consecutive vec4s.
// The packing reads W through strides, so one kernel serves the forward pass and the input
// gradient (channels swapped, taps flipped). x is [N, Ci, D, H, W], y [N, Co, D, H, W]. The
// 1×1×1 convolution and the transposed one are conv3d_point.wgsl.
//
// Each thread owns a register block of 4·CG output channels × VZ planes × 4 rows × VX voxels
// (CG = 1, 2 or 4 (F16: ≤ 2), VZ ≤ 4, VX = 4 or 8) and reads its inputs straight from global
// memory: nothing goes through workgroup memory and there are no barriers. Per input channel
// it loads the 27·CG weight vec4s once and every input row of its window once (VZ + 2 planes
// × 6 rows of VX + 2 values, the x taps reusing a row by shifting it in registers). Why: on a
// CPU adapter (llvmpipe) every load is a per-lane loop costing ~10–40 cycles per float and a
// multiply-add about one (on CPUs without AVX-512 more: each lane's word costs a failed
// store-to-load forward, see CONV_TILES in src/ops/tuning.ts), so the block is as large as
// spilling allows; staging through workgroup memory only adds loads (the same per-lane loop),
// and barriers make every load slower still. On a GPU the same kernel runs with a smaller
// block (src/ops/tuning.ts picks the tiles) and relies on its caches.
//
// F16 = 1 (W % 8 == 0) reads the input and the weights as IEEE binary16 pairs
// packed by half_pack.wgsl and accumulates in f32: `xh` holds 8 values of a row per
// vec4<u32> (VX = 4 uses one half; `xhs` the same words one by one, for the halo), `pwh` the
// 4·CG channels of a tap per vec4<u32> (CG = 1: two taps per vec4<u32>). With VX = 8 that is
// 6 loaded words per input row instead of 10 and half the weight words: on a CPU adapter,
// where every load is a per-lane loop, a part of the kernel's cost; on a GPU, half the bytes.
//
// VEC = 1 (W % 4 == 0) reads rows as aligned vec4s through `srcv`, the same buffer as `src`,
// plus two scalar halo values, and writes whole vec4s; VEC = 0 reads and writes single checked
// floats. TEX = 1 (VEC = 1, F16 = 0) reads the rows and the halo from `xt`, the input copied
// into an rgba32float texture, and WTEX = 1 the packed weights from `wt` likewise: on a CPU
// adapter a texel fetch is a 16-byte load per lane instead of a per-lane loop (see
// inputBinding in src/ops/tuning.ts). `dst` is an array of vec4s, written by component where a
// vec4 would not be aligned or would leave the row (shaders/lib/conv_store.wgsl).

// K, VX, VEC and PAD are declared with the input window (structs WindowRows and Plane,
// loadPlane, rowWindow) in shaders/lib/conv_window.wgsl, shared with conv3d_wgrad.wgsl.
// The store (shaders/lib/conv_store.wgsl) serves the transposed convolution's layout too.
const MODE: u32 = 0u;
override CG: u32 = 2u;
override VZ: u32 = 4u;
// The activation fused into the store is a uniform, params.act: 0 none, 1 ReLU,
// 2 leaky ReLU (slope params.actP), 3 ELU (alpha params.actP). It saves a pass over the
// output and the pre-activation tensor. As a uniform rather than an override constant it lets
// the forward pass (with ReLU) and the input gradient (without) share one pipeline: on a CPU
// adapter each variant of this kernel is about 30 s of LLVM compilation, and the branch runs
// once per 16 stored values.
override F16: u32 = 0u;
// 1: the packed weights are read from the texel texture wt (the pw tensor copied by
// src/gpu/texture.ts), K = 3 and F16 = 0 only; see weightBinding in src/ops/tuning.ts.
override WTEX: u32 = 0u;

override KT: u32 = K * K * K;

// Output rows of one plane: a{dy}, column dx = the 4 channels of voxel dx.
struct TileAcc {
  a0: mat4x4<f32>,
  a1: mat4x4<f32>,
  a2: mat4x4<f32>,
  a3: mat4x4<f32>,
}

// One output plane of one channel group: voxels x .. x + 3 in lo, x + 4 .. x + 7 in hi (VX = 8).
struct PlaneAcc {
  lo: TileAcc,
  hi: TileAcc,
}

// The VZ output planes of one channel group.
struct GroupAcc {
  z0: PlaneAcc,
  z1: PlaneAcc,
  z2: PlaneAcc,
  z3: PlaneAcc,
}

// A thread's accumulators: channel groups 0 .. CG - 1.
struct ThreadAcc {
  g0: GroupAcc,
  g1: GroupAcc,
  g2: GroupAcc,
  g3: GroupAcc,
}

// One kernel plane kz: w{ky}; column kx = the 4 channels' weights of tap (kz, ky, kx).
struct KernelPlane {
  w0: mat3x4<f32>,
  w1: mat3x4<f32>,
  w2: mat3x4<f32>,
}

// The weights of one channel group and input channel: kernel planes k0..k2 (K = 3).
struct GroupWeights {
  k0: KernelPlane,
  k1: KernelPlane,
  k2: KernelPlane,
}

// Both channel groups' weights of one input channel, or of one kernel plane (F16 = 1).
struct GroupWeightsPair {
  g0: GroupWeights,
  g1: GroupWeights,
}

// The weights of every channel group of one input channel (groups past CG unused).
struct GroupWeightsQuad {
  g0: GroupWeights,
  g1: GroupWeights,
  g2: GroupWeights,
  g3: GroupWeights,
}

struct KernelPlanePair {
  g0: KernelPlane,
  g1: KernelPlane,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Flat thread index → (x tile, channel tile, y tile, z tile, n), x tiles fastest so
  // neighbouring lanes read neighbouring rows.
  var g = threadIndex(wid, nwg, lid);
  if (g >= params.groups) { return; }
  let tx = g % params.tilesX;
  g /= params.tilesX;
  let tc = g % params.tilesC;
  g /= params.tilesC;
  let ty = g % params.tilesY;
  g /= params.tilesY;
  let tz = g % params.tilesZ;
  let n = g / params.tilesZ;
  let x0 = tx * VX;
  let y0 = ty * 4u;
  let z0 = tz * VZ;

  var acc: ThreadAcc;
  for (var ci = 0u; ci < params.ci; ci++) {
    // vec4 index of tap 0 of channel group 0; taps step by CG.
    let taps = (tc * params.ciPad + ci) * KT;
    let wb = taps * CG;
    var w: GroupWeightsQuad;
    if (F16 == 1u) {
      let both = loadWeightsHalf(taps);
      w.g0 = both.g0;
      w.g1 = both.g1;
    } else {
      w.g0 = loadGroupWeights(wb);
      if (CG >= 2u) { w.g1 = loadGroupWeights(wb + 1u); }
      if (CG == 4u) {
        w.g2 = loadGroupWeights(wb + 2u);
        w.g3 = loadGroupWeights(wb + 3u);
      }
    }
    // The VZ + 2 input planes of the window, unrolled by hand: lavapipe would run a loop over
    // register blocks as a loop over memory.
    let zp = i32(z0) - 1;
    acc = feedInputPlane(acc, w, loadPlane(n, ci, zp, y0, x0), 0u);
    acc = feedInputPlane(acc, w, loadPlane(n, ci, zp + 1, y0, x0), 1u);
    acc = feedInputPlane(acc, w, loadPlane(n, ci, zp + 2, y0, x0), 2u);
    if (VZ >= 2u) { acc = feedInputPlane(acc, w, loadPlane(n, ci, zp + 3, y0, x0), 3u); }
    if (VZ >= 3u) { acc = feedInputPlane(acc, w, loadPlane(n, ci, zp + 4, y0, x0), 4u); }
    if (VZ >= 4u) { acc = feedInputPlane(acc, w, loadPlane(n, ci, zp + 5, y0, x0), 5u); }
  }

  storeGroups(acc, n, tc * 4u * CG, z0, y0, x0);
}

// Input plane p of the window (grid plane z0 + p - P) feeds output plane dz through kernel
// plane p - dz; p is a constant at every call.
fn feedInputPlane(a: ThreadAcc, w: GroupWeightsQuad, r: Plane, p: u32) -> ThreadAcc {
  var o = a;
  o.g0 = feedGroup(a.g0, w.g0, r, p);
  if (CG >= 2u) { o.g1 = feedGroup(a.g1, w.g1, r, p); }
  if (CG == 4u) {
    o.g2 = feedGroup(a.g2, w.g2, r, p);
    o.g3 = feedGroup(a.g3, w.g3, r, p);
  }
  return o;
}

fn feedGroup(g: GroupAcc, w: GroupWeights, r: Plane, p: u32) -> GroupAcc {
  var o = g;
  if (p < 3u) { o.z0 = convPlane(g.z0, w, p, r); }
  if (VZ >= 2u && p >= 1u && p < 4u) { o.z1 = convPlane(g.z1, w, p - 1u, r); }
  if (VZ >= 3u && p >= 2u && p < 5u) { o.z2 = convPlane(g.z2, w, p - 2u, r); }
  if (VZ >= 4u && p >= 3u) { o.z3 = convPlane(g.z3, w, p - 3u, r); }
  return o;
}

fn convPlane(b: PlaneAcc, w: GroupWeights, kz: u32, r: Plane) -> PlaneAcc {
  var o = b;
  var wz = w.k0;
  if (kz == 1u) { wz = w.k1; }
  if (kz == 2u) { wz = w.k2; }
  o.lo = convTile(b.lo, wz, r.lo);
  if (VX == 8u) { o.hi = convTile(b.hi, wz, r.hi); }
  return o;
}

// One input plane through one kernel plane: output row dy sees input rows dy .. dy + 2.
fn convTile(a: TileAcc, w: KernelPlane, r: WindowRows) -> TileAcc {
  return TileAcc(
    convOut(a.a0, w, r.p0, r.q0, r.p1, r.q1, r.p2, r.q2),
    convOut(a.a1, w, r.p1, r.q1, r.p2, r.q2, r.p3, r.q3),
    convOut(a.a2, w, r.p2, r.q2, r.p3, r.q3, r.p4, r.q4),
    convOut(a.a3, w, r.p3, r.q3, r.p4, r.q4, r.p5, r.q5),
  );
}

// One output row (column dx = the 4 channels of voxel dx) through the 3 kernel rows, one
// channel at a time: a channel's 4 voxels take their 9 taps together. A CPU adapter holds one
// value (of 8 threads) per SIMD register, and this order lets LLVM keep a channel's 4 sums, 3
// weights and 6 inputs in registers: 27 % fewer spill stores than the same multiply-adds
// ordered voxel by voxel over all 4 channels, and at C=K=32 on AVX2 (input and weights as
// texels) 1.26× faster with block 1×4×8, 1.35× with 2×2×8 (2×4×8: no change). Each sum adds
// its products in the same order either way (kernel row, then kx).
fn convOut(acc: mat4x4<f32>, w: KernelPlane, p0: vec4<f32>, q0: vec4<f32>, p1: vec4<f32>,
           q1: vec4<f32>, p2: vec4<f32>, q2: vec4<f32>) -> mat4x4<f32> {
  let c0 = convChannel(transpose(acc)[0], kernelRows(w, 0u), p0, q0, p1, q1, p2, q2);
  let c1 = convChannel(transpose(acc)[1], kernelRows(w, 1u), p0, q0, p1, q1, p2, q2);
  let c2 = convChannel(transpose(acc)[2], kernelRows(w, 2u), p0, q0, p1, q1, p2, q2);
  let c3 = convChannel(transpose(acc)[3], kernelRows(w, 3u), p0, q0, p1, q1, p2, q2);
  return transpose(mat4x4<f32>(c0, c1, c2, c3));
}

// Channel c's weights of one kernel plane: column ky, component kx.
fn kernelRows(w: KernelPlane, c: u32) -> mat3x3<f32> {
  return mat3x3<f32>(vec3<f32>(w.w0[0][c], w.w0[1][c], w.w0[2][c]),
                     vec3<f32>(w.w1[0][c], w.w1[1][c], w.w1[2][c]),
                     vec3<f32>(w.w2[0][c], w.w2[1][c], w.w2[2][c]));
}

// One channel's 4 voxels (a) through kernel rows k[0..2] over input rows 0..2.
fn convChannel(a: vec4<f32>, k: mat3x3<f32>, p0: vec4<f32>, q0: vec4<f32>, p1: vec4<f32>,
               q1: vec4<f32>, p2: vec4<f32>, q2: vec4<f32>) -> vec4<f32> {
  return rowTaps(rowTaps(rowTaps(a, k[0], p0, q0), k[1], p1, q1), k[2], p2, q2);
}

// Voxel dx += k.x·in[dx] + k.y·in[dx + 1] + k.z·in[dx + 2], in = (p.xyzw, q.xy), added in
// that order.
fn rowTaps(a: vec4<f32>, k: vec3<f32>, p: vec4<f32>, q: vec4<f32>) -> vec4<f32> {
  let s1 = vec4<f32>(p.yzw, q.x);
  let s2 = vec4<f32>(p.zw, q.xy);
  return fma(vec4<f32>(k.z), s2, fma(vec4<f32>(k.y), s1, fma(vec4<f32>(k.x), p, a)));
}

// The 27 packed weight vec4s of one channel group (K = 3), from vec4 index b (taps CG apart).
fn loadGroupWeights(b: u32) -> GroupWeights {
  return GroupWeights(loadKernelPlane(b), loadKernelPlane(b + 9u * CG),
                      loadKernelPlane(b + 18u * CG));
}

fn loadKernelPlane(b: u32) -> KernelPlane {
  return KernelPlane(
    mat3x4<f32>(weight(b), weight(b + CG), weight(b + 2u * CG)),
    mat3x4<f32>(weight(b + 3u * CG), weight(b + 4u * CG), weight(b + 5u * CG)),
    mat3x4<f32>(weight(b + 6u * CG), weight(b + 7u * CG), weight(b + 8u * CG)),
  );
}

// Packed weight vec4 i: from the texel texture wt when WTEX = 1 (K = 3), else from pw.
fn weight(i: u32) -> vec4<f32> {
  if (WTEX == 1u) {
    let mask = (1u << TEXEL_ROW_SHIFT) - 1u;
    return textureLoad(wt, vec2<u32>(i & mask, i >> TEXEL_ROW_SHIFT), 0);
  }
  return pw[i];
}

// F16 = 1: the 27 taps of both channel groups from tap b on.
fn loadWeightsHalf(b: u32) -> GroupWeightsPair {
  let k0 = loadKernelPlaneHalf(b);
  let k1 = loadKernelPlaneHalf(b + 9u);
  let k2 = loadKernelPlaneHalf(b + 18u);
  return GroupWeightsPair(GroupWeights(k0.g0, k1.g0, k2.g0), GroupWeights(k0.g1, k1.g1, k2.g1));
}

fn loadKernelPlaneHalf(b: u32) -> KernelPlanePair {
  let t0 = halfTap(b);
  let t1 = halfTap(b + 1u);
  let t2 = halfTap(b + 2u);
  let t3 = halfTap(b + 3u);
  let t4 = halfTap(b + 4u);
  let t5 = halfTap(b + 5u);
  let t6 = halfTap(b + 6u);
  let t7 = halfTap(b + 7u);
  let t8 = halfTap(b + 8u);
  return KernelPlanePair(
    KernelPlane(mat3x4<f32>(t0[0], t1[0], t2[0]), mat3x4<f32>(t3[0], t4[0], t5[0]),
       mat3x4<f32>(t6[0], t7[0], t8[0])),
    KernelPlane(mat3x4<f32>(t0[1], t1[1], t2[1]), mat3x4<f32>(t3[1], t4[1], t5[1]),
       mat3x4<f32>(t6[1], t7[1], t8[1])),
  );
}

// The 4·CG channels of tap t: group 0 in column 0, group 1 (CG = 2) in column 1.
fn halfTap(t: u32) -> mat2x4<f32> {
  if (CG == 1u) {
    let v = pwh[t / 2u];
    let h = select(v.xy, v.zw, (t & 1u) == 1u);
    return mat2x4<f32>(vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)), vec4<f32>());
  }
  let v = pwh[t];
  return mat2x4<f32>(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
                     vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}

// The row window of shaders/lib/conv_window.wgsl, read as binary16 pairs when F16 = 1.
fn loadRow(n: u32, ci: u32, z: i32, y: i32, x0: u32) -> array<vec4<f32>, 4> {
  if (F16 == 1u) { return halfRowWindow(n, ci, z, y, x0); }
  return rowWindow(n, ci, z, y, x0);
}

// F16 = 1: rowWindow from the binary16 copy of the input. Words of value pairs; rows start at
// multiples of 8 (W % 8 == 0) and x0 is a multiple of VX, so x0 - 1 is the high half of its
// word and x0 + VX the low half of its own. VX = 4 takes the half of the vec4<u32> its 4 values
// are in. Indices are clamped into the row; masks zero the rest.
fn halfRowWindow(n: u32, ci: u32, z: i32, y: i32, x0: u32) -> array<vec4<f32>, 4> {
  let ok = rowInside(ci, z, y);
  let row = rowStart(n, ci, z, y);
  var v = select(vec4<u32>(), xh[(row + x0) / 8u], ok && x0 < params.w);
  if (VX == 4u && (x0 & 4u) != 0u) { v = vec4<u32>(v.zw, 0u, 0u); }
  let lw = select(0u, xhs[(row + max(x0, 1u) - 1u) / 2u], ok && x0 > 0u);
  let rw = select(0u, xhs[(row + min(x0 + VX, params.w - 1u)) / 2u], ok && x0 + VX < params.w);
  let a = vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
  let b = vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
  return withHalo(unpack2x16float(lw).y, a, b, unpack2x16float(rw).x);
}

// Index of x[n, ci, z, y, 0] (grid coordinates, in range); x steps by X_STEP from there.
fn xRow(n: u32, ci: u32, z: u32, y: u32) -> u32 {
  return (((n * params.ci + ci) * params.d + z) * params.h + y) * params.w;
}

const X_STEP: u32 = 1u;

// Channel group g's planes: channels o0 + 4·g, planes z0 .. z0 + VZ - 1.
fn storeGroups(a: ThreadAcc, n: u32, o0: u32, z0: u32, y0: u32, x0: u32) {
  storeGroup(a.g0, n, o0, z0, y0, x0);
  if (CG >= 2u) { storeGroup(a.g1, n, o0 + 4u, z0, y0, x0); }
  if (CG == 4u) {
    storeGroup(a.g2, n, o0 + 8u, z0, y0, x0);
    storeGroup(a.g3, n, o0 + 12u, z0, y0, x0);
  }
}

fn storeGroup(g: GroupAcc, n: u32, o0: u32, z0: u32, y0: u32, x0: u32) {
  storePlane(g.z0, n, o0, z0, y0, x0);
  if (VZ >= 2u) { storePlane(g.z1, n, o0, z0 + 1u, y0, x0); }
  if (VZ >= 3u) { storePlane(g.z2, n, o0, z0 + 2u, y0, x0); }
  if (VZ >= 4u) { storePlane(g.z3, n, o0, z0 + 3u, y0, x0); }
}

fn storePlane(b: PlaneAcc, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oz >= params.d || o0 >= params.co) { return; }
  let bv = biasVec(o0);
  storeTile(b.lo, bv, n, o0, oz, oy, ox);
  if (VX == 8u) { storeTile(b.hi, bv, n, o0, oz, oy, ox + 4u); }
}

fn storeTile(a: TileAcc, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  storeOutputRow(a.a0, bv, n, o0, oz, oy, ox);
  storeOutputRow(a.a1, bv, n, o0, oz, oy + 1u, ox);
  storeOutputRow(a.a2, bv, n, o0, oz, oy + 2u, ox);
  storeOutputRow(a.a3, bv, n, o0, oz, oy + 3u, ox);
}

