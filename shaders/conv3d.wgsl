// conv3d: direct convolution, stride 1, "same" padding P = (K - 1) / 2 for K = 3 or K = 1, over
// a grid of D×H×W voxels:
//
//   y[n, o, v] = b[o] + Σ_i Σ_t W(o, i, t) · x[n, i, v + t - P]      t = (kz, ky, kx)
//
// W comes packed by conv3d_pack.wgsl, pw[((tc·CiPad + i)·K³ + t)·GW + j] = W(tc·GW + j, i, t),
// zero past Co and Ci, for tiles of GW channels (4·CG; K = 1: 4·CG·VZ) and CiPad input
// channels (Ci; K = 1: Ci rounded up to 4): the channels of a tap are consecutive vec4s. The
// packing reads W through strides, so one kernel serves the forward pass, the input gradient
// (channels swapped, taps flipped) and the transposed convolution. MODE selects how x and y
// map to memory (K = 1 only for MODE 1 and 2), for the transposed convolution with kernel 2
// stride 2, whose 8 taps become 8 channels per real channel:
//   0  x [N, Ci, D, H, W], y [N, Co, D, H, W]
//   1  y is [N, Co/8, 2D, 2H, 2W]: channel o = 8·c + tap lands at (c, 2v + tap)     (convT)
//   2  x is [N, Ci/8, 2D, 2H, 2W] read the same way: channel i = 8·c + tap is x[c, 2v + tap]
//                                                                         (convT input grad)
//
// Each thread owns a register block of 4·CG output channels × VZ planes × 4 rows × VX voxels
// (CG = 1, 2 or 4 (F16: ≤ 2), VZ ≤ 4, VX = 4 or 8; for K = 1 the VZ plane slots hold more channels of one plane
// instead) and reads its inputs straight from global memory: nothing goes through workgroup
// memory and there are no barriers. Per input channel it loads the CG·K³ weight vec4s once
// and every input row of its window once (K = 3: VZ + 2 planes × 6 rows of VX + 2 values, the
// x taps reusing a row by shifting it in registers). Why: on a CPU adapter (llvmpipe) every
// load is a per-lane loop costing ~10–40 cycles per float and a multiply-add about one (on
// CPUs without AVX-512 more: each lane's word costs a failed store-to-load forward, see
// CONV_TILES in src/ops/tuning.ts), so the block is as large as spilling allows; staging through
// workgroup memory only adds loads (the same per-lane loop), and barriers make every load
// slower still. On a GPU the same kernel runs with a smaller
// block (src/ops/tuning.ts picks the tiles) and relies on its caches.
//
// F16 = 1 (K = 3, MODE 0, W % 8 == 0) reads the input and the weights as IEEE binary16 pairs
// packed by half_pack.wgsl and accumulates in f32: `xh` holds 8 values of a row per
// vec4<u32> (VX = 4 uses one half; `xhs` the same words one by one, for the halo), `pwh` the
// 4·CG channels of a tap per vec4<u32> (CG = 1: two taps per vec4<u32>). With VX = 8 that is
// 6 loaded words per input row instead of 10 and half the weight words: on a CPU adapter,
// where every load is a per-lane loop, a part of the kernel's cost; on a GPU, half the bytes.
//
// VEC = 1 (W % 4 == 0) reads rows as aligned vec4s through `srcv`, the same buffer as `src`,
// plus two scalar halo values (MODE 2: up-sampled rows, see loadTaps), and writes whole vec4s;
// VEC = 0 reads and writes single checked floats. TEX = 1 (K = 3, MODE 0, VEC = 1, F16 = 0)
// reads the rows and the halo from `xt`, the input copied into an rgba32float texture, and
// WTEX = 1 the packed weights from `wt` likewise: on a CPU adapter a texel fetch is a 16-byte
// load per lane instead of a per-lane loop (see inputBinding in src/ops/tuning.ts). `dst` is an array of vec4s, written by
// component where a vec4 would not be aligned or would leave the row.

// K, VX, VEC and PAD are declared with the input window (structs WindowRows and Plane,
// loadPlane, rowWindow) in shaders/lib/conv_window.wgsl, shared with conv3d_wgrad.wgsl.
override MODE: u32 = 0u;
override CG: u32 = 2u;
override VZ: u32 = 4u;
// The activation fused into the store is a uniform, params.act (MODE 0): 0 none, 1 ReLU,
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
// Input channels per step of the main loop.
override CI_STEP: u32 = select(1u, 4u, K == 1u);

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
  // K = 3: VZ planes of 4·CG channels; K = 1: one plane of VZ·4·CG channels (see below).
  let z0 = tz * select(VZ, 1u, K == 1u);

  var acc: ThreadAcc;
  for (var ci = 0u; ci < params.ci; ci += CI_STEP) {
    if (K == 1u) {
      // A 1×1×1 convolution reuses nothing across planes, so the plane slots hold more
      // channels instead: slot k, group g is channel tc·4·CG·VZ + 4·(CG·k + g), and every
      // input value loaded serves 4·CG·VZ channels. Input channels go 4 at a time (the
      // packed weights are zero past Ci), so each spilled accumulator is loaded and stored
      // once per 4 multiply-adds rather than per one.
      var r: array<Plane, 4>;
      if (MODE == 2u && VEC == 1u) {
        r = loadTaps(n, ci, z0, y0, x0);
      } else {
        let z = i32(z0);
        r = array<Plane, 4>(loadPlane(n, ci, z, y0, x0), loadPlane(n, ci + 1u, z, y0, x0),
                            loadPlane(n, ci + 2u, z, y0, x0), loadPlane(n, ci + 3u, z, y0, x0));
      }
      let wb = (tc * params.ciPad + ci) * CG * VZ;
      acc.g0 = pointGroup(acc.g0, wb, r[0], r[1], r[2], r[3]);
      if (CG >= 2u) { acc.g1 = pointGroup(acc.g1, wb + 1u, r[0], r[1], r[2], r[3]); }
      if (CG == 4u) {
        acc.g2 = pointGroup(acc.g2, wb + 2u, r[0], r[1], r[2], r[3]);
        acc.g3 = pointGroup(acc.g3, wb + 3u, r[0], r[1], r[2], r[3]);
      }
      continue;
    }
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

  if (K == 1u) {
    let o0 = tc * 4u * CG * VZ;
    storeGroups(acc, n, o0, 4u * CG, z0, 0u, y0, x0);
  } else {
    storeGroups(acc, n, tc * 4u * CG, 0u, z0, 1u, y0, x0);
  }
}

// K = 1: slot k of a group adds Σ_c weight vec4 pw[b + CG·k + c·CG·VZ] × plane r_c over the
// 4 input channels c of the step.
fn pointGroup(g: GroupAcc, b: u32, r0: Plane, r1: Plane, r2: Plane, r3: Plane) -> GroupAcc {
  var o = g;
  o.z0 = pointPlane(g.z0, b, r0, r1, r2, r3);
  if (VZ >= 2u) { o.z1 = pointPlane(g.z1, b + CG, r0, r1, r2, r3); }
  if (VZ >= 3u) { o.z2 = pointPlane(g.z2, b + 2u * CG, r0, r1, r2, r3); }
  if (VZ >= 4u) { o.z3 = pointPlane(g.z3, b + 3u * CG, r0, r1, r2, r3); }
  return o;
}

fn pointPlane(b: PlaneAcc, w: u32, r0: Plane, r1: Plane, r2: Plane, r3: Plane) -> PlaneAcc {
  let s = CG * VZ;
  let w4 = mat4x4<f32>(pw[w], pw[w + s], pw[w + 2u * s], pw[w + 3u * s]);
  var o = b;
  o.lo = pointTile(b.lo, w4, r0.lo, r1.lo, r2.lo, r3.lo);
  if (VX == 8u) { o.hi = pointTile(b.hi, w4, r0.hi, r1.hi, r2.hi, r3.hi); }
  return o;
}

// K = 1: output row dy += Σ_c w[c] ⊗ (row dy of input channel c).
fn pointTile(a: TileAcc, w: mat4x4<f32>, r0: WindowRows, r1: WindowRows, r2: WindowRows,
             r3: WindowRows) -> TileAcc {
  return TileAcc(
    addOuters(a.a0, w, r0.p0, r1.p0, r2.p0, r3.p0),
    addOuters(a.a1, w, r0.p1, r1.p1, r2.p1, r3.p1),
    addOuters(a.a2, w, r0.p2, r1.p2, r2.p2, r3.p2),
    addOuters(a.a3, w, r0.p3, r1.p3, r2.p3, r3.p3),
  );
}

fn addOuters(acc: mat4x4<f32>, w: mat4x4<f32>, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>,
          p3: vec4<f32>) -> mat4x4<f32> {
  return addOuter(addOuter(addOuter(addOuter(acc, w[0], p0), w[1], p1), w[2], p2), w[3], p3);
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

// Column dx += w · p[dx]: one input row through one weight vec4.
fn addOuter(acc: mat4x4<f32>, w: vec4<f32>, p: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(w, vec4<f32>(p.x), acc[0]),
    fma(w, vec4<f32>(p.y), acc[1]),
    fma(w, vec4<f32>(p.z), acc[2]),
    fma(w, vec4<f32>(p.w), acc[3]),
  );
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

// MODE 2, VEC = 1: input channels ci .. ci + 3 (ci a multiple of 4) are taps (b, c) = (0,0),
// (0,1), (1,0), (1,1) of real channel ci / 8 at plane offset a = (ci / 4) & 1, so for each
// coarse row they are two up-sampled rows read as whole vec4s and split into even (c = 0) and
// odd (c = 1) values: 2·VX/4 vec4 loads per row for 4 channels instead of 4·VX single floats.
fn loadTaps(n: u32, ci: u32, z: u32, y0: u32, x0: u32) -> array<Plane, 4> {
  let zz = 2u * min(z, params.d - 1u) + ((ci >> 2u) & 1u);
  // Up-sampled row 0 of the plane, in vec4s.
  let plane = ((n * (params.ci >> 3u) + (ci >> 3u)) * 2u * params.d + zz) * params.h * params.w;
  let a = tapRow(z < params.d, plane, y0, x0);
  let b = tapRow(z < params.d, plane, y0 + 1u, x0);
  let c = tapRow(z < params.d, plane, y0 + 2u, x0);
  let d = tapRow(z < params.d, plane, y0 + 3u, x0);
  return array<Plane, 4>(
    Plane(rowsWithoutHalo(a[0], b[0], c[0], d[0]), rowsWithoutHalo(a[4], b[4], c[4], d[4])),
    Plane(rowsWithoutHalo(a[1], b[1], c[1], d[1]), rowsWithoutHalo(a[5], b[5], c[5], d[5])),
    Plane(rowsWithoutHalo(a[2], b[2], c[2], d[2]), rowsWithoutHalo(a[6], b[6], c[6], d[6])),
    Plane(rowsWithoutHalo(a[3], b[3], c[3], d[3]), rowsWithoutHalo(a[7], b[7], c[7], d[7])),
  );
}

// Coarse row y of the 4 tap channels: [lo of (b, c) = (0,0), (0,1), (1,0), (1,1), then hi].
fn tapRow(zOk: bool, plane: u32, y: u32, x0: u32) -> array<vec4<f32>, 8> {
  let ok = zOk && y < params.h;
  // Up-sampled rows 2y (b = 0) and 2y + 1 (b = 1) from column 2·x0, as vec4 indices.
  let f0 = plane + (2u * min(y, params.h - 1u) * 2u * params.w + 2u * x0) / 4u;
  let f1 = f0 + params.w / 2u;
  let e = fineVecs(ok, f0, x0);
  let o = fineVecs(ok, f1, x0);
  return array<vec4<f32>, 8>(
    vec4<f32>(e[0].x, e[0].z, e[1].x, e[1].z), vec4<f32>(e[0].y, e[0].w, e[1].y, e[1].w),
    vec4<f32>(o[0].x, o[0].z, o[1].x, o[1].z), vec4<f32>(o[0].y, o[0].w, o[1].y, o[1].w),
    vec4<f32>(e[2].x, e[2].z, e[3].x, e[3].z), vec4<f32>(e[2].y, e[2].w, e[3].y, e[3].w),
    vec4<f32>(o[2].x, o[2].z, o[3].x, o[3].z), vec4<f32>(o[2].y, o[2].w, o[3].y, o[3].w),
  );
}

// The VX/2 vec4s of an up-sampled row from vec4 index f (coarse columns x0 + 2k, x0 + 2k + 1
// in vec4 k); zero outside the volume. W % 4 == 0, so a vec4 is wholly in or out.
fn fineVecs(ok: bool, f: u32, x0: u32) -> array<vec4<f32>, 4> {
  var a: array<vec4<f32>, 4>;
  a[0] = select(vec4<f32>(), srcv[f], ok && x0 < params.w);
  a[1] = select(vec4<f32>(), srcv[f + 1u], ok && x0 + 2u < params.w);
  if (VX == 8u) {
    a[2] = select(vec4<f32>(), srcv[f + 2u], ok && x0 + 4u < params.w);
    a[3] = select(vec4<f32>(), srcv[f + 3u], ok && x0 + 6u < params.w);
  }
  return a;
}

// K = 1 rows p0..p3 (no halo).
fn rowsWithoutHalo(p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>) -> WindowRows {
  let z = vec4<f32>();
  return WindowRows(p0, z, p1, z, p2, z, p3, z, z, z, z, z);
}

// Index of x[n, ci, z, y, 0] (grid coordinates, in range) for the MODE's layout; x steps by
// X_STEP from there.
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

override X_STEP: u32 = select(1u, 2u, MODE == 2u);

// Group g's slot k: channels o0 + 4·g + k·oStep at plane z0 + k·zStep.
fn storeGroups(a: ThreadAcc, n: u32, o0: u32, oStep: u32, z0: u32, zStep: u32, y0: u32,
               x0: u32) {
  storeGroup(a.g0, n, o0, oStep, z0, zStep, y0, x0);
  if (CG >= 2u) { storeGroup(a.g1, n, o0 + 4u, oStep, z0, zStep, y0, x0); }
  if (CG == 4u) {
    storeGroup(a.g2, n, o0 + 8u, oStep, z0, zStep, y0, x0);
    storeGroup(a.g3, n, o0 + 12u, oStep, z0, zStep, y0, x0);
  }
}

fn storeGroup(g: GroupAcc, n: u32, o0: u32, oStep: u32, z0: u32, zStep: u32, y0: u32, x0: u32) {
  storePlane(g.z0, n, o0, z0, y0, x0);
  if (VZ >= 2u) { storePlane(g.z1, n, o0 + oStep, z0 + zStep, y0, x0); }
  if (VZ >= 3u) { storePlane(g.z2, n, o0 + 2u * oStep, z0 + 2u * zStep, y0, x0); }
  if (VZ >= 4u) { storePlane(g.z3, n, o0 + 3u * oStep, z0 + 3u * zStep, y0, x0); }
}

fn storePlane(b: PlaneAcc, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oz >= params.d || o0 >= params.co) { return; }
  let bv = biasVec(o0);
  storeTile(b.lo, bv, n, o0, oz, oy, ox);
  if (VX == 8u) { storeTile(b.hi, bv, n, o0, oz, oy, ox + 4u); }
}

fn storeTile(a: TileAcc, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  storeRow(a.a0, bv, n, o0, oz, oy, ox);
  storeRow(a.a1, bv, n, o0, oz, oy + 1u, ox);
  storeRow(a.a2, bv, n, o0, oz, oy + 2u, ox);
  storeRow(a.a3, bv, n, o0, oz, oy + 3u, ox);
}

// A row of 4 voxels × 4 channels plus bias. Straight-line code: on a CPU adapter loops and
// branches here cost more than the stores.
fn storeRow(acc: mat4x4<f32>, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oy >= params.h || ox >= params.w) { return; }
  let t = transpose(acc); // t[c]: channel o0 + c of the 4 voxels
  let t0 = act(t[0] + vec4<f32>(bv.x));
  let t1 = act(t[1] + vec4<f32>(bv.y));
  let t2 = act(t[2] + vec4<f32>(bv.z));
  let t3 = act(t[3] + vec4<f32>(bv.w));
  if (MODE == 1u && VEC == 1u && ox + 4u <= params.w) {
    // Channels o0 .. o0 + 3 are taps (b, c) = (0,0), (0,1), (1,0), (1,1) of one real channel
    // and plane offset a (o0 is a multiple of 4): two up-sampled rows of 8 values each, whole
    // aligned vec4s since 2W % 4 == 0.
    let i = yIndex(n, o0, oz, oy, ox) / 4u;
    let w2 = params.w / 2u; // vec4s per up-sampled row
    dst[i] = vec4<f32>(t0.x, t1.x, t0.y, t1.y);
    dst[i + 1u] = vec4<f32>(t0.z, t1.z, t0.w, t1.w);
    dst[i + w2] = vec4<f32>(t2.x, t3.x, t2.y, t3.y);
    dst[i + w2 + 1u] = vec4<f32>(t2.z, t3.z, t2.w, t3.w);
    return;
  }
  storeVoxels(t0, n, o0, oz, oy, ox);
  storeVoxels(t1, n, o0 + 1u, oz, oy, ox);
  storeVoxels(t2, n, o0 + 2u, oz, oy, ox);
  storeVoxels(t3, n, o0 + 3u, oz, oy, ox);
}

// The fused activation (see params.act above).
fn act(v: vec4<f32>) -> vec4<f32> {
  let pos = v > vec4<f32>(0.0);
  switch params.act {
    case 1u: { return max(v, vec4<f32>(0.0)); }
    case 2u: { return select(params.actP * v, v, pos); }
    case 3u: { return select(params.actP * (exp(v) - 1.0), v, pos); }
    default: { return v; }
  }
}

// Channel o of voxels ox .. ox + 3 (2 apart in MODE 1), those inside the volume: one aligned
// vec4 when VEC = 1 in MODE 0, else single floats (dst[i / 4][i % 4]).
fn storeVoxels(v: vec4<f32>, n: u32, o: u32, oz: u32, oy: u32, ox: u32) {
  if (o >= params.co) { return; }
  let i = yIndex(n, o, oz, oy, ox);
  if (MODE != 1u && VEC == 1u && ox + 4u <= params.w) {
    dst[i / 4u] = v;
    return;
  }
  let s = select(1u, 2u, MODE == 1u);
  storeAt(i, v.x);
  if (ox + 1u < params.w) { storeAt(i + s, v.y); }
  if (ox + 2u < params.w) { storeAt(i + 2u * s, v.z); }
  if (ox + 3u < params.w) { storeAt(i + 3u * s, v.w); }
}

fn storeAt(i: u32, v: f32) {
  dst[i / 4u][i % 4u] = v;
}

// The 4 bias values of channels o0 .. o0 + 3 (zero without bias or past Co).
fn biasVec(o0: u32) -> vec4<f32> {
  if (params.hasBias == 0u) { return vec4<f32>(); }
  return vec4<f32>(biasAt(o0), biasAt(o0 + 1u), biasAt(o0 + 2u), biasAt(o0 + 3u));
}

fn biasAt(o: u32) -> f32 {
  let oc = min(o, params.co - 1u);
  return select(0.0, bias[select(oc, oc >> 3u, MODE == 1u)], o < params.co);
}

fn yIndex(n: u32, o: u32, z: u32, y: u32, x: u32) -> u32 {
  if (MODE == 1u) {
    let tap = o & 7u;
    let d2 = 2u * params.d;
    let h2 = 2u * params.h;
    let w2 = 2u * params.w;
    let zz = 2u * z + (tap >> 2u);
    let yy = 2u * y + ((tap >> 1u) & 1u);
    let xx = 2u * x + (tap & 1u);
    return ((((n * (params.co >> 3u) + (o >> 3u)) * d2 + zz) * h2 + yy) * w2) + xx;
  }
  return (((n * params.co + o) * params.d + z) * params.h + y) * params.w + x;
}
