// conv3d weight gradient, partial sums: the correlation of gy and x, K = 3 (P = 1) or K = 1,
//
//   G(o, i, t) = Σ_n Σ_v gy[n, o, v] · x[n, i, v + t - P]      t = (kz·K + ky)·K + kx
//
// is a reduction over N·D·H·W. The voxels are cut into blocks of VZ planes × 4 rows × VX
// voxels; thread (i tile, o tile, slice s) sums slice s, a contiguous run of blocks, and
// writes its sum to partial slot s: part[s·M + o·gO + i·gI + t]. conv3d_reduce.wgsl then adds
// the S slots (the host keeps slices short enough for f32 sums). With gO = Ci·K³, gI = K³ the
// result is in PyTorch's [Co, Ci, K, K, K] order; other strides serve the transposed
// convolution (MODE 1, K = 1: gy is [N, Co/8, 2D, 2H, 2W] seen as 8 channels per real channel
// over the D×H×W grid, channel o = 8·c + tap is gy[c, 2v + tap]).
//
// K = 3: a thread owns 4·CG channels o × 1 channel i × 27 taps. Per block it loads each gy row
// of its channels once (4 vec4 along x, transposed in registers to one vec4 of 4 channels per
// voxel) and each x row of the window once (VZ + 2 planes × 6 rows), and issues
// 27 · 4·CG · 4·VZ·VX multiply-adds. K = 1: 4·CG channels o × 8 channels i, an outer product
// per voxel. Nothing goes through workgroup memory and there are no barriers: on a CPU adapter
// every load is a per-lane loop, so only the loads per multiply-add matter (see conv3d.wgsl).
//
// VEC = 1 (W % 4 == 0) reads x and gy rows as aligned vec4s through srcv and gyv, the same
// buffers as src (x) and gy; VEC = 0 reads checked scalars. TEX = 1 (K = 3, MODE 0, VEC = 1)
// reads them from the texel textures xt and gyt instead (see TEX in conv_window.wgsl). The x window (structs WindowRows,
// Plane and loadPlane) is shaders/lib/conv_window.wgsl, shared with conv3d.wgsl.

// K, VX, VEC and PAD are declared with the x window, shaders/lib/conv_window.wgsl.
override MODE: u32 = 0u;
override CG: u32 = 1u;
override VZ: u32 = 2u;

// Input channels per thread.
override RI: u32 = select(1u, 8u, K == 1u);

// gy of one block plane for one channel group: rows 0..3 of voxels x .. x + 3 (lo{dy}) and
// x + 4 .. x + 7 (hi{dy}, VX = 8); column dx of a row = the 4 channels at voxel dx.
struct GyPlane {
  lo0: mat4x4<f32>, lo1: mat4x4<f32>, lo2: mat4x4<f32>, lo3: mat4x4<f32>,
  hi0: mat4x4<f32>, hi1: mat4x4<f32>, hi2: mat4x4<f32>, hi3: mat4x4<f32>,
}

// gy of one block plane for both channel groups.
struct GyPlanes {
  g0: GyPlane,
  g1: GyPlane,
}

// Accumulators of kernel plane kz for one channel group: g{ky}, column kx = the 4 channels'
// gradient at (kz, ky, kx).
struct KernelPlaneSums {
  g0: mat3x4<f32>,
  g1: mat3x4<f32>,
  g2: mat3x4<f32>,
}

// One channel group's sums: the 27 taps in k0..k2 (K = 3), or the 4 × 8 outer-product sums
// in p0, p1 (K = 1: column r of p{h} = channel i + 4·h + r).
struct GroupSums {
  k0: KernelPlaneSums,
  k1: KernelPlaneSums,
  k2: KernelPlaneSums,
  p0: mat4x4<f32>,
  p1: mat4x4<f32>,
}

// A thread's sums: channel groups 0 and 1 (CG = 2).
struct GradAcc {
  c0: GroupSums,
  c1: GroupSums,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Thread → (i tile, o tile, slice), i fastest: the lanes of a SIMD group share gy.
  var g = threadIndex(wid, nwg, lid);
  if (g >= params.groups) { return; }
  let i0 = (g % params.tilesI) * RI;
  g /= params.tilesI;
  let oBase = (g % params.tilesO) * 4u * CG;
  let s = g / params.tilesO;

  var acc: GradAcc;
  // Slice s is a contiguous run of blocks, so a thread streams through neighbouring memory
  // and the threads of other channel tiles find the same run in cache shortly after
  // (strided slices measured 1.5× slower at 64³).
  let blocks = params.n * params.tilesZ * params.tilesY * params.tilesX;
  let run = (blocks + params.slices - 1u) / params.slices;
  let qEnd = min(blocks, (s + 1u) * run);
  for (var q = s * run; q < qEnd; q++) {
    var r = q;
    let x0 = (r % params.tilesX) * VX;
    r /= params.tilesX;
    let y0 = (r % params.tilesY) * 4u;
    r /= params.tilesY;
    let z0 = (r % params.tilesZ) * VZ;
    let n = r / params.tilesZ;
    if (K == 1u) {
      acc = pointBlock(acc, n, oBase, i0, z0, y0, x0);
      continue;
    }
    // x plane p of the window meets gy plane dz through kernel plane p - dz; each gy plane is
    // loaded just before the first x plane that needs it. Unrolled by hand, like conv3d.wgsl.
    let zp = i32(z0) - 1;
    var gz0 = loadGyPlanes(n, oBase, z0, y0, x0);
    var gz1: GyPlanes;
    var gz2: GyPlanes;
    var gz3: GyPlanes;
    if (VZ >= 2u) { gz1 = loadGyPlanes(n, oBase, z0 + 1u, y0, x0); }
    acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp, y0, x0), 0u);
    if (VZ >= 3u) { gz2 = loadGyPlanes(n, oBase, z0 + 2u, y0, x0); }
    acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp + 1, y0, x0), 1u);
    if (VZ >= 4u) { gz3 = loadGyPlanes(n, oBase, z0 + 3u, y0, x0); }
    acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp + 2, y0, x0), 2u);
    if (VZ >= 2u) {
      acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp + 3, y0, x0), 3u);
    }
    if (VZ >= 3u) {
      acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp + 4, y0, x0), 4u);
    }
    if (VZ >= 4u) {
      acc = feedXPlane(acc, gz0, gz1, gz2, gz3, loadPlane(n, i0, zp + 5, y0, x0), 5u);
    }
  }

  let slot = s * params.m;
  storeGroupSums(acc.c0, slot, oBase, i0);
  if (CG == 2u) { storeGroupSums(acc.c1, slot, oBase + 4u, i0); }
}

// x plane p of the window against the gy planes dz = p - kz it meets; p is constant at every
// call.
fn feedXPlane(a: GradAcc, gz0: GyPlanes, gz1: GyPlanes, gz2: GyPlanes, gz3: GyPlanes, r: Plane,
              p: u32) -> GradAcc {
  var o = a;
  o.c0 = feedGroupSums(a.c0, gz0.g0, gz1.g0, gz2.g0, gz3.g0, r, p);
  if (CG == 2u) { o.c1 = feedGroupSums(a.c1, gz0.g1, gz1.g1, gz2.g1, gz3.g1, r, p); }
  return o;
}

fn feedGroupSums(a: GroupSums, gz0: GyPlane, gz1: GyPlane, gz2: GyPlane, gz3: GyPlane, r: Plane,
                 p: u32) -> GroupSums {
  var o = a;
  // Kernel plane kz pairs x plane p with gy plane p - kz.
  if (p < VZ) { o.k0 = correlatePlane(o.k0, gyPlaneAt(gz0, gz1, gz2, gz3, p), r); }
  if (p >= 1u && p - 1u < VZ) {
    o.k1 = correlatePlane(o.k1, gyPlaneAt(gz0, gz1, gz2, gz3, p - 1u), r);
  }
  if (p >= 2u && p - 2u < VZ) {
    o.k2 = correlatePlane(o.k2, gyPlaneAt(gz0, gz1, gz2, gz3, p - 2u), r);
  }
  return o;
}

fn gyPlaneAt(gz0: GyPlane, gz1: GyPlane, gz2: GyPlane, gz3: GyPlane, dz: u32) -> GyPlane {
  if (dz == 1u) { return gz1; }
  if (dz == 2u) { return gz2; }
  if (dz == 3u) { return gz3; }
  return gz0;
}

// One x plane against one gy plane: the lo voxels, then (VX = 8) the hi ones.
fn correlatePlane(k: KernelPlaneSums, g: GyPlane, r: Plane) -> KernelPlaneSums {
  let o = correlateRows(k, g.lo0, g.lo1, g.lo2, g.lo3, r.lo);
  if (VX == 8u) { return correlateRows(o, g.hi0, g.hi1, g.hi2, g.hi3, r.hi); }
  return o;
}

// Gy rows g0..g3 (4 voxels each) against the 6 x rows r of the same voxels: kernel row ky pairs
// gy row dy with x row dy + ky. One gy channel at a time: as in conv3d.wgsl's convOut, a CPU
// adapter then keeps a channel's 3 sums, 4 gy values and 6 inputs in registers (1.4× faster at
// C=K=32 on AVX2 than all 4 channels voxel by voxel); each sum adds its products in the same
// order either way (gy row, then voxel).
fn correlateRows(k: KernelPlaneSums, g0: mat4x4<f32>, g1: mat4x4<f32>, g2: mat4x4<f32>,
                 g3: mat4x4<f32>, r: WindowRows) -> KernelPlaneSums {
  let t0 = transpose(g0);
  let t1 = transpose(g1);
  let t2 = transpose(g2);
  let t3 = transpose(g3);
  let c0 = correlateChannel(channelSums(k, 0u), t0[0], t1[0], t2[0], t3[0], r);
  let c1 = correlateChannel(channelSums(k, 1u), t0[1], t1[1], t2[1], t3[1], r);
  let c2 = correlateChannel(channelSums(k, 2u), t0[2], t1[2], t2[2], t3[2], r);
  let c3 = correlateChannel(channelSums(k, 3u), t0[3], t1[3], t2[3], t3[3], r);
  return KernelPlaneSums(
    mat3x4<f32>(vec4<f32>(c0[0].x, c1[0].x, c2[0].x, c3[0].x),
                vec4<f32>(c0[0].y, c1[0].y, c2[0].y, c3[0].y),
                vec4<f32>(c0[0].z, c1[0].z, c2[0].z, c3[0].z)),
    mat3x4<f32>(vec4<f32>(c0[1].x, c1[1].x, c2[1].x, c3[1].x),
                vec4<f32>(c0[1].y, c1[1].y, c2[1].y, c3[1].y),
                vec4<f32>(c0[1].z, c1[1].z, c2[1].z, c3[1].z)),
    mat3x4<f32>(vec4<f32>(c0[2].x, c1[2].x, c2[2].x, c3[2].x),
                vec4<f32>(c0[2].y, c1[2].y, c2[2].y, c3[2].y),
                vec4<f32>(c0[2].z, c1[2].z, c2[2].z, c3[2].z)),
  );
}

// Channel c's sums of one kernel plane: column ky, component kx.
fn channelSums(k: KernelPlaneSums, c: u32) -> mat3x3<f32> {
  return mat3x3<f32>(vec3<f32>(k.g0[0][c], k.g0[1][c], k.g0[2][c]),
                     vec3<f32>(k.g1[0][c], k.g1[1][c], k.g1[2][c]),
                     vec3<f32>(k.g2[0][c], k.g2[1][c], k.g2[2][c]));
}

// One gy channel (rows g0..g3 of 4 voxels): kernel row ky (column ky of k) pairs gy row dy with
// x row dy + ky.
fn correlateChannel(k: mat3x3<f32>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
                    r: WindowRows) -> mat3x3<f32> {
  return mat3x3<f32>(
    corrTaps(corrTaps(corrTaps(corrTaps(k[0], g0, r.p0, r.q0), g1, r.p1, r.q1), g2, r.p2, r.q2),
             g3, r.p3, r.q3),
    corrTaps(corrTaps(corrTaps(corrTaps(k[1], g0, r.p1, r.q1), g1, r.p2, r.q2), g2, r.p3, r.q3),
             g3, r.p4, r.q4),
    corrTaps(corrTaps(corrTaps(corrTaps(k[2], g0, r.p2, r.q2), g1, r.p3, r.q3), g2, r.p4, r.q4),
             g3, r.p5, r.q5),
  );
}

// Tap kx: k[kx] += Σ_dx g[dx] · x(dx + kx), x = (p.xyzw, q.xy), voxels in order.
fn corrTaps(k: vec3<f32>, g: vec4<f32>, p: vec4<f32>, q: vec4<f32>) -> vec3<f32> {
  let s1 = vec4<f32>(p.yzw, q.x);
  let s2 = vec4<f32>(p.zw, q.xy);
  return vec3<f32>(fma(g.w, p.w, fma(g.z, p.z, fma(g.y, p.y, fma(g.x, p.x, k.x)))),
                   fma(g.w, s1.w, fma(g.z, s1.z, fma(g.y, s1.y, fma(g.x, s1.x, k.y)))),
                   fma(g.w, s2.w, fma(g.z, s2.z, fma(g.y, s2.y, fma(g.x, s2.x, k.z)))));
}

// K = 1, one block: for each voxel, the outer product of gy (4·CG channels o) and x (8
// channels i), summed over the block's VZ × 4 rows. Per row of 4 voxels: 8 + 4·CG vec4 loads
// for 128·CG multiply-adds.
fn pointBlock(a: GradAcc, n: u32, oBase: u32, i0: u32, z0: u32, y0: u32, x0: u32) -> GradAcc {
  var o = a;
  for (var dz = 0u; dz < VZ; dz++) {
    for (var dy = 0u; dy < 4u; dy++) {
      o = pointRow(o, n, oBase, i0, z0 + dz, y0 + dy, x0);
      if (VX == 8u) { o = pointRow(o, n, oBase, i0, z0 + dz, y0 + dy, x0 + 4u); }
    }
  }
  return o;
}

fn pointRow(a: GradAcc, n: u32, oBase: u32, i0: u32, z: u32, y: u32, x: u32) -> GradAcc {
  var o = a;
  // x of channels i0 .. i0 + 7 along the row, one vec4 (4 voxels) per channel.
  let x0 = mat4x4<f32>(xVoxels(n, i0, z, y, x), xVoxels(n, i0 + 1u, z, y, x),
                       xVoxels(n, i0 + 2u, z, y, x), xVoxels(n, i0 + 3u, z, y, x));
  let x1 = mat4x4<f32>(xVoxels(n, i0 + 4u, z, y, x), xVoxels(n, i0 + 5u, z, y, x),
                       xVoxels(n, i0 + 6u, z, y, x), xVoxels(n, i0 + 7u, z, y, x));
  let g0 = gyRow(n, oBase, z, y, x);
  o.c0.p0 = addOuterRow(o.c0.p0, g0, x0);
  o.c0.p1 = addOuterRow(o.c0.p1, g0, x1);
  if (CG == 2u) {
    let g1 = gyRow(n, oBase + 4u, z, y, x);
    o.c1.p0 = addOuterRow(o.c1.p0, g1, x0);
    o.c1.p1 = addOuterRow(o.c1.p1, g1, x1);
  }
  return o;
}

// Column r += Σ_dx g[dx] · x_r[dx]: g column dx = 4 channels o at voxel dx, xa column r = 4
// voxels of channel i0 + r.
fn addOuterRow(k: mat4x4<f32>, g: mat4x4<f32>, xa: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(addProducts(k[0], g, xa[0]), addProducts(k[1], g, xa[1]),
                     addProducts(k[2], g, xa[2]), addProducts(k[3], g, xa[3]));
}

fn addProducts(k: vec4<f32>, g: mat4x4<f32>, x: vec4<f32>) -> vec4<f32> {
  return fma(g[3], vec4<f32>(x.w), fma(g[2], vec4<f32>(x.z), fma(g[1], vec4<f32>(x.y),
    fma(g[0], vec4<f32>(x.x), k))));
}

// gy of one block plane: 4 rows × VX voxels for each channel group.
fn loadGyPlanes(n: u32, o: u32, z: u32, y0: u32, x0: u32) -> GyPlanes {
  var r: GyPlanes;
  r.g0 = loadGyPlane(n, o, z, y0, x0);
  if (CG == 2u) { r.g1 = loadGyPlane(n, o + 4u, z, y0, x0); }
  return r;
}

fn loadGyPlane(n: u32, o: u32, z: u32, y0: u32, x0: u32) -> GyPlane {
  var r: GyPlane;
  r.lo0 = gyRow(n, o, z, y0, x0);
  r.lo1 = gyRow(n, o, z, y0 + 1u, x0);
  r.lo2 = gyRow(n, o, z, y0 + 2u, x0);
  r.lo3 = gyRow(n, o, z, y0 + 3u, x0);
  if (VX == 8u) {
    r.hi0 = gyRow(n, o, z, y0, x0 + 4u);
    r.hi1 = gyRow(n, o, z, y0 + 1u, x0 + 4u);
    r.hi2 = gyRow(n, o, z, y0 + 2u, x0 + 4u);
    r.hi3 = gyRow(n, o, z, y0 + 3u, x0 + 4u);
  }
  return r;
}

// gy of channels o .. o + 3 at voxels x .. x + 3 of grid row (z, y): column dx = the 4
// channels at voxel x + dx. Zero outside the volume or past Co.
fn gyRow(n: u32, o: u32, z: u32, y: u32, x: u32) -> mat4x4<f32> {
  let ok = z < params.d && y < params.h && x < params.w;
  let zc = min(z, params.d - 1u);
  let yc = min(y, params.h - 1u);
  if (MODE == 1u) {
    // Channels o .. o + 3 (o a multiple of 4) are taps 4a + 2b + c of real channel o / 8,
    // a = (o / 4) & 1: fine rows 2y + b at fine plane 2z + a, columns 2x + c.
    let w2 = 2u * params.w;
    let row0 = (((n * (params.co >> 3u) + (o >> 3u)) * 2u * params.d + 2u * zc + ((o >> 2u) & 1u)) *
      2u * params.h + 2u * yc) * w2;
    let oc = o < params.co;
    let b0 = fineRow(ok && oc, row0, x);      // (x c0, x c1, x+1 c0, x+1 c1, …) for b = 0
    let b1 = fineRow(ok && oc, row0 + w2, x); // b = 1
    // Columns: voxel x + dx; components: channels (b, c) = (0,0), (0,1), (1,0), (1,1).
    return mat4x4<f32>(
      vec4<f32>(b0[0].x, b0[0].y, b1[0].x, b1[0].y),
      vec4<f32>(b0[0].z, b0[0].w, b1[0].z, b1[0].w),
      vec4<f32>(b0[1].x, b0[1].y, b1[1].x, b1[1].y),
      vec4<f32>(b0[1].z, b0[1].w, b1[1].z, b1[1].w),
    );
  }
  let plane = params.d * params.h * params.w;
  let row = (((n * params.co + min(o, params.co - 1u)) * params.d + zc) * params.h + yc) *
    params.w;
  let c0 = gyVoxels(ok && o < params.co, row, x);
  let c1 = gyVoxels(ok && o + 1u < params.co, row + select(0u, plane, o + 1u < params.co), x);
  let c2 = gyVoxels(ok && o + 2u < params.co, row + select(0u, 2u * plane, o + 2u < params.co), x);
  let c3 = gyVoxels(ok && o + 3u < params.co, row + select(0u, 3u * plane, o + 3u < params.co), x);
  return transpose(mat4x4<f32>(c0, c1, c2, c3));
}

// gy at voxels x .. x + 3 of one row starting at index row (zero where not ok or past W).
fn gyVoxels(ok: bool, row: u32, x: u32) -> vec4<f32> {
  if (TEX == 1u) {
    return select(vec4<f32>(), gyTexel((row + x) / 4u), ok);
  }
  if (VEC == 1u) {
    return select(vec4<f32>(), gyv[(row + x) / 4u], ok);
  }
  return vec4<f32>(gyValue(ok, row, x), gyValue(ok, row, x + 1u), gyValue(ok, row, x + 2u),
                   gyValue(ok, row, x + 3u));
}

// Texel t of gy's texture (TEX = 1): gy[4t .. 4t + 3].
fn gyTexel(t: u32) -> vec4<f32> {
  let mask = (1u << TEXEL_ROW_SHIFT) - 1u;
  return textureLoad(gyt, vec2<u32>(t & mask, t >> TEXEL_ROW_SHIFT), 0);
}

fn gyValue(ok: bool, row: u32, x: u32) -> f32 {
  return select(0.0, gy[row + min(x, params.w - 1u)], ok && x < params.w);
}

// Fine gy row (MODE 1) at fine columns 2x .. 2x + 7, as two vec4s (zero past 2W).
fn fineRow(ok: bool, row: u32, x: u32) -> array<vec4<f32>, 2> {
  let w2 = 2u * params.w;
  let f = row + 2u * x;
  if (VEC == 1u) {
    // 2W % 4 == 0: the vec4s are aligned; 2x + 4 < 2W whenever x + 2 < W.
    return array<vec4<f32>, 2>(select(vec4<f32>(), gyv[f / 4u], ok),
                               select(vec4<f32>(), gyv[f / 4u + 1u], ok && x + 2u < params.w));
  }
  return array<vec4<f32>, 2>(
    vec4<f32>(fineValue(ok, row, 2u * x), fineValue(ok, row, 2u * x + 1u),
              fineValue(ok, row, 2u * x + 2u), fineValue(ok, row, 2u * x + 3u)),
    vec4<f32>(fineValue(ok, row, 2u * x + 4u), fineValue(ok, row, 2u * x + 5u),
              fineValue(ok, row, 2u * x + 6u), fineValue(ok, row, 2u * x + 7u)),
  );
}

fn fineValue(ok: bool, row: u32, xx: u32) -> f32 {
  return select(0.0, gy[row + min(xx, 2u * params.w - 1u)], ok && xx < 2u * params.w);
}

// x of channel i at voxels x .. x + 3 of grid row (z, y) (K = 1; zero outside or past Ci).
fn xVoxels(n: u32, i: u32, z: u32, y: u32, x: u32) -> vec4<f32> {
  let ok = i < params.ci && z < params.d && y < params.h && x < params.w;
  let row = xRow(n, min(i, params.ci - 1u), min(z, params.d - 1u), min(y, params.h - 1u));
  if (VEC == 1u) {
    return select(vec4<f32>(), srcv[(row + x) / 4u], ok);
  }
  return vec4<f32>(loadX(ok, row, i32(x)), loadX(ok, row, i32(x) + 1), loadX(ok, row, i32(x) + 2),
                   loadX(ok, row, i32(x) + 3));
}

// x rows for shaders/lib/conv_window.wgsl (its loadPlane reads the K = 3 window): x is
// [N, Ci, D, H, W] in every MODE.
fn loadRow(n: u32, i: u32, z: i32, y: i32, x0: u32) -> array<vec4<f32>, 4> {
  return rowWindow(n, i, z, y, x0);
}

fn xRow(n: u32, i: u32, z: u32, y: u32) -> u32 {
  return (((n * params.ci + i) * params.d + z) * params.h + y) * params.w;
}

const X_STEP: u32 = 1u;

// The sums of one channel group (channels o .. o + 3) into its partial slot.
fn storeGroupSums(a: GroupSums, slot: u32, o: u32, i0: u32) {
  for (var c = 0u; c < 4u; c++) {
    if (o + c >= params.co) { return; }
    let oc = slot + (o + c) * params.gO;
    if (K == 1u) {
      storePointSums(oc, i0, a.p0, c);
      storePointSums(oc, i0 + 4u, a.p1, c);
      continue;
    }
    if (i0 >= params.ci) { return; }
    let at = oc + i0 * params.gI;
    storeKernelPlane(at, a.k0, c);
    storeKernelPlane(at + 9u, a.k1, c);
    storeKernelPlane(at + 18u, a.k2, c);
  }
}

// K = 1: component c (a channel o) of channels i .. i + 3 (those below Ci), at oc + i·gI.
fn storePointSums(oc: u32, i: u32, p: mat4x4<f32>, c: u32) {
  if (i < params.ci) { part[oc + i * params.gI] = p[0][c]; }
  if (i + 1u < params.ci) { part[oc + (i + 1u) * params.gI] = p[1][c]; }
  if (i + 2u < params.ci) { part[oc + (i + 2u) * params.gI] = p[2][c]; }
  if (i + 3u < params.ci) { part[oc + (i + 3u) * params.gI] = p[3][c]; }
}

// Component c (a channel o) of the 9 taps of one kernel plane, to part[at + ky·3 + kx].
fn storeKernelPlane(at: u32, g: KernelPlaneSums, c: u32) {
  part[at] = g.g0[0][c];
  part[at + 1u] = g.g0[1][c];
  part[at + 2u] = g.g0[2][c];
  part[at + 3u] = g.g1[0][c];
  part[at + 4u] = g.g1[1][c];
  part[at + 5u] = g.g1[2][c];
  part[at + 6u] = g.g2[0][c];
  part[at + 7u] = g.g2[1][c];
  part[at + 8u] = g.g2[2][c];
}
