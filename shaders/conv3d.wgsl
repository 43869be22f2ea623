// conv3d: direct convolution as an implicit GEMM, stride 1, "same" padding P = (K - 1) / 2 for
// K = 3 or K = 1, over a grid of D×H×W voxels:
//
//   y[n, o, v] = b[o] + Σ_i Σ_t W(o, i, t) · x[n, i, v + t - P]      t = (kz, ky, kx)
//
// W is read through strides, W(o, i, t) = w[wBase + o·wO + i·wI + t·wT] with t flattened as
// (kz·K + ky)·K + kx, so one kernel serves several ops:
//   forward           wO = Ci·K³, wI = K³,    wT = 1,  wBase = 0
//   input gradient    wO = K³,    wI = Co·K³, wT = -1, wBase = K³ - 1  (x = gy; the kernel with
//                     channels swapped and taps flipped)
// MODE selects how x and y map to memory (K = 1 only for MODE 1 and 2), for the transposed
// convolution with kernel 2 stride 2, whose 8 taps become 8 channels per real channel:
//   0  x [N, Ci, D, H, W], y [N, Co, D, H, W]
//   1  y is [N, Co/8, 2D, 2H, 2W]: channel o = 8·c + tap lands at (c, 2v + tap)     (convT)
//   2  x is [N, Ci/8, 2D, 2H, 2W] read the same way: channel i = 8·c + tap is x[c, 2v + tap]
//                                                                         (convT input grad)
//
// A workgroup computes a tile of 4·CG output channels × (2·BZ, 4·BY, 4·BX) voxels of one batch
// item. Each thread owns a register block of 4 channels × 2×4×4 voxels: two Acc4 (one per z),
// each 4 mat4x4 (one per y row) whose column dx holds the 4 channels of voxel dx. For each chunk
// of CI_CHUNK input channels the workgroup stages the input patch (with halo, zero padded) and
// the weights into workgroup memory as vec4s. Per input channel a thread then loads its 27
// weight vec4s and 4 planes × 6 rows × 2 vec4 of input once each and issues 864 vec4 FMAs. On a
// CPU adapter every workgroup-memory load is a per-lane gather (~2 cycles per lane and float),
// so FMAs per loaded float is what sets the speed; on a GPU the same blocking keeps the tile in
// registers.

override K: u32 = 3u;
override MODE: u32 = 0u;
override CG: u32 = 4u;
override BX: u32 = 2u;
override BY: u32 = 2u;
override BZ: u32 = 4u;
override CI_CHUNK: u32 = 4u;

// The register block, voxels per thread along z, y, x; the helpers below are written for it.
const VZ: u32 = 2u;
const VY: u32 = 4u;
const VX: u32 = 4u;

override WG: u32 = CG * BZ * BY * BX;
override KT: u32 = K * K * K;
override PAD: u32 = (K - 1u) / 2u;
// Staged input tile extent: z and y in voxels, x in vec4 (a row padded to a multiple of 4).
override SZ: u32 = BZ * VZ + K - 1u;
override SY: u32 = BY * VY + K - 1u;
override SX: u32 = (BX * VX + K - 1u + 3u) / 4u;
override XS_LEN: u32 = CI_CHUNK * SZ * SY * SX;
override WS_LEN: u32 = CI_CHUNK * KT * CG;

// xs[ci][zz][yy][sx]: the input patch from (z0 - P, y0 - P, x0 - P), zero outside the volume.
var<workgroup> xs: array<vec4<f32>, XS_LEN>;
// ws[ci][t][cg]: weights of tap t for output channels coBase + 4·cg + (0..3).
var<workgroup> ws: array<vec4<f32>, WS_LEN>;

// Accumulators of one output plane: a{dy} for the 4 rows; column dx = 4 channels of voxel dx.
struct Acc4 {
  a0: mat4x4<f32>,
  a1: mat4x4<f32>,
  a2: mat4x4<f32>,
  a3: mat4x4<f32>,
}

// One kernel plane kz: w{ky}; column kx = the 4 channels' weights of tap (kz, ky, kx).
struct Wz {
  w0: mat3x4<f32>,
  w1: mat3x4<f32>,
  w2: mat3x4<f32>,
}

// 6 input rows of one plane; row r holds inputs x - P .. x + 5 - P in (p{r}.xyzw, q{r}.xy).
struct Rows6 {
  p0: vec4<f32>, q0: vec4<f32>,
  p1: vec4<f32>, q1: vec4<f32>,
  p2: vec4<f32>, q2: vec4<f32>,
  p3: vec4<f32>, q3: vec4<f32>,
  p4: vec4<f32>, q4: vec4<f32>,
  p5: vec4<f32>, q5: vec4<f32>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Flat workgroup index → (n, channel tile, z tile, y tile, x tile), x tiles fastest. The
  // whole workgroup leaves together, so the barriers below stay uniform.
  var g = wid.x + wid.y * nwg.x;
  if (g >= params.groups) { return; }
  let tx = g % params.tilesX;
  g /= params.tilesX;
  let ty = g % params.tilesY;
  g /= params.tilesY;
  let tz = g % params.tilesZ;
  g /= params.tilesZ;
  let tc = g % params.tilesC;
  let n = g / params.tilesC;
  let x0 = tx * BX * VX;
  let y0 = ty * BY * VY;
  let z0 = tz * BZ * VZ;
  let coBase = tc * 4u * CG;

  // Thread → register block; bx fastest so neighbouring threads write neighbouring voxels.
  let bx = lid % BX;
  let by = (lid / BX) % BY;
  let bz = (lid / (BX * BY)) % BZ;
  let cg = lid / (BX * BY * BZ);

  var acc0: Acc4; // output plane z0 + bz·2
  var acc1: Acc4; // the plane after it

  for (var c0 = 0u; c0 < params.ci; c0 += CI_CHUNK) {
    workgroupBarrier();
    for (var i = lid; i < XS_LEN; i += WG) {
      let sx = i % SX;
      let yy = (i / SX) % SY;
      let zz = (i / (SX * SY)) % SZ;
      let ci = c0 + i / (SX * SY * SZ);
      xs[i] = loadX4(n, ci, z0 + zz, y0 + yy, x0 + sx * 4u);
    }
    // Taps fastest (contiguous in w for the forward pass), stored as ws[ci][t][cg].
    for (var i = lid; i < WS_LEN; i += WG) {
      let t = i % KT;
      let c = (i / KT) % CG;
      let cl = i / (KT * CG);
      ws[(cl * KT + t) * CG + c] = loadW4(coBase + c * 4u, c0 + cl, t);
    }
    workgroupBarrier();

    for (var cl = 0u; cl < CI_CHUNK; cl++) {
      // Row r of input plane p of this thread's window starts at xs[base + (p·SY + r)·SX].
      let base = ((cl * SZ + bz * VZ) * SY + by * VY) * SX + bx;
      if (K == 1u) {
        let wk = ws[cl * CG + cg];
        acc0 = plane1(acc0, wk, base);
        acc1 = plane1(acc1, wk, base + SY * SX);
        continue;
      }
      let t = cl * KT * CG + cg;
      let wz0 = loadWz(t);
      let wz1 = loadWz(t + 9u * CG);
      let wz2 = loadWz(t + 18u * CG);
      // Input plane p feeds output plane dz through kernel plane kz = p - dz.
      let r0 = loadRows(base);
      acc0 = plane3(acc0, wz0, r0);
      let r1 = loadRows(base + SY * SX);
      acc0 = plane3(acc0, wz1, r1);
      acc1 = plane3(acc1, wz0, r1);
      let r2 = loadRows(base + 2u * SY * SX);
      acc0 = plane3(acc0, wz2, r2);
      acc1 = plane3(acc1, wz1, r2);
      let r3 = loadRows(base + 3u * SY * SX);
      acc1 = plane3(acc1, wz2, r3);
    }
  }

  let o0 = coBase + cg * 4u;
  let oz = z0 + bz * VZ;
  let oy = y0 + by * VY;
  let ox = x0 + bx * VX;
  let bv = biasVec(o0);
  storePlane(acc0, bv, n, o0, oz, oy, ox);
  storePlane(acc1, bv, n, o0, oz + 1u, oy, ox);
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

// 4 consecutive inputs along x from staged position (zs, ys, xs0) = grid position + P; zero
// where the grid position lies outside the volume or ci ≥ Ci. Loads use clamped indices.
fn loadX4(n: u32, ci: u32, zs: u32, ys: u32, xs0: u32) -> vec4<f32> {
  let z = i32(zs) - i32(PAD);
  let y = i32(ys) - i32(PAD);
  let x = i32(xs0) - i32(PAD);
  let rowOk = ci < params.ci && u32(z) < params.d && u32(y) < params.h;
  let row = xRow(n, min(ci, params.ci - 1u), min(u32(z), params.d - 1u), min(u32(y), params.h - 1u));
  let last = i32(params.w) - 1;
  return vec4<f32>(
    select(0.0, src[row + u32(clamp(x, 0, last)) * X_STEP], rowOk && u32(x) < params.w),
    select(0.0, src[row + u32(clamp(x + 1, 0, last)) * X_STEP], rowOk && u32(x + 1) < params.w),
    select(0.0, src[row + u32(clamp(x + 2, 0, last)) * X_STEP], rowOk && u32(x + 2) < params.w),
    select(0.0, src[row + u32(clamp(x + 3, 0, last)) * X_STEP], rowOk && u32(x + 3) < params.w),
  );
}

// Weights of tap t, input channel ci, for output channels o .. o + 3 (zero past Co or Ci).
fn loadW4(o: u32, ci: u32, t: u32) -> vec4<f32> {
  let ok = ci < params.ci;
  let at = params.wBase + i32(min(o, params.co - 1u)) * params.wO +
    i32(min(ci, params.ci - 1u)) * params.wI + i32(t) * params.wT;
  let ok1 = ok && o + 1u < params.co;
  let ok2 = ok && o + 2u < params.co;
  let ok3 = ok && o + 3u < params.co;
  return vec4<f32>(
    select(0.0, wgt[u32(at)], ok && o < params.co),
    select(0.0, wgt[u32(at + select(0, params.wO, ok1))], ok1),
    select(0.0, wgt[u32(at + select(0, 2 * params.wO, ok2))], ok2),
    select(0.0, wgt[u32(at + select(0, 3 * params.wO, ok3))], ok3),
  );
}

fn loadWz(t: u32) -> Wz {
  return Wz(
    mat3x4<f32>(ws[t], ws[t + CG], ws[t + 2u * CG]),
    mat3x4<f32>(ws[t + 3u * CG], ws[t + 4u * CG], ws[t + 5u * CG]),
    mat3x4<f32>(ws[t + 6u * CG], ws[t + 7u * CG], ws[t + 8u * CG]),
  );
}

fn loadRows(b: u32) -> Rows6 {
  return Rows6(
    xs[b], xs[b + 1u],
    xs[b + SX], xs[b + SX + 1u],
    xs[b + 2u * SX], xs[b + 2u * SX + 1u],
    xs[b + 3u * SX], xs[b + 3u * SX + 1u],
    xs[b + 4u * SX], xs[b + 4u * SX + 1u],
    xs[b + 5u * SX], xs[b + 5u * SX + 1u],
  );
}

// One input plane through one kernel plane: output row dy sees input rows dy .. dy + 2.
fn plane3(a: Acc4, w: Wz, r: Rows6) -> Acc4 {
  return Acc4(
    row3(row3(row3(a.a0, w.w0, r.p0, r.q0), w.w1, r.p1, r.q1), w.w2, r.p2, r.q2),
    row3(row3(row3(a.a1, w.w0, r.p1, r.q1), w.w1, r.p2, r.q2), w.w2, r.p3, r.q3),
    row3(row3(row3(a.a2, w.w0, r.p2, r.q2), w.w1, r.p3, r.q3), w.w2, r.p4, r.q4),
    row3(row3(row3(a.a3, w.w0, r.p3, r.q3), w.w1, r.p4, r.q4), w.w2, r.p5, r.q5),
  );
}

// One input row through one kernel row: voxel dx sees inputs dx .. dx + 2 of (p.xyzw, q.xy).
fn row3(acc: mat4x4<f32>, w: mat3x4<f32>, p: vec4<f32>, q: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(w[2], vec4<f32>(p.z), fma(w[1], vec4<f32>(p.y), fma(w[0], vec4<f32>(p.x), acc[0]))),
    fma(w[2], vec4<f32>(p.w), fma(w[1], vec4<f32>(p.z), fma(w[0], vec4<f32>(p.y), acc[1]))),
    fma(w[2], vec4<f32>(q.x), fma(w[1], vec4<f32>(p.w), fma(w[0], vec4<f32>(p.z), acc[2]))),
    fma(w[2], vec4<f32>(q.y), fma(w[1], vec4<f32>(q.x), fma(w[0], vec4<f32>(p.w), acc[3]))),
  );
}

// K = 1: each output row is its input row times one weight vec4.
fn plane1(a: Acc4, w: vec4<f32>, b: u32) -> Acc4 {
  return Acc4(
    outer1(a.a0, w, xs[b]),
    outer1(a.a1, w, xs[b + SX]),
    outer1(a.a2, w, xs[b + 2u * SX]),
    outer1(a.a3, w, xs[b + 3u * SX]),
  );
}

fn outer1(acc: mat4x4<f32>, w: vec4<f32>, p: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(w, vec4<f32>(p.x), acc[0]),
    fma(w, vec4<f32>(p.y), acc[1]),
    fma(w, vec4<f32>(p.z), acc[2]),
    fma(w, vec4<f32>(p.w), acc[3]),
  );
}

fn storePlane(a: Acc4, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oz >= params.d) { return; }
  storeRow(a.a0, bv, n, o0, oz, oy, ox);
  storeRow(a.a1, bv, n, o0, oz, oy + 1u, ox);
  storeRow(a.a2, bv, n, o0, oz, oy + 2u, ox);
  storeRow(a.a3, bv, n, o0, oz, oy + 3u, ox);
}

// A row of 4 voxels × 4 channels plus bias. Straight-line code: on a CPU adapter loops and
// branches here cost more than the stores.
fn storeRow(acc: mat4x4<f32>, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oy >= params.h) { return; }
  let t = transpose(acc); // t[c]: channel o0 + c of the 4 voxels
  storeVoxels(t[0] + vec4<f32>(bv.x), n, o0, oz, oy, ox);
  storeVoxels(t[1] + vec4<f32>(bv.y), n, o0 + 1u, oz, oy, ox);
  storeVoxels(t[2] + vec4<f32>(bv.z), n, o0 + 2u, oz, oy, ox);
  storeVoxels(t[3] + vec4<f32>(bv.w), n, o0 + 3u, oz, oy, ox);
}

// Channel o of voxels ox .. ox + 3 (2 apart in MODE 1), those inside the volume.
fn storeVoxels(v: vec4<f32>, n: u32, o: u32, oz: u32, oy: u32, ox: u32) {
  if (o >= params.co) { return; }
  let i = yIndex(n, o, oz, oy, ox);
  let s = select(1u, 2u, MODE == 1u);
  if (ox + 4u <= params.w) {
    dst[i] = v.x;
    dst[i + s] = v.y;
    dst[i + 2u * s] = v.z;
    dst[i + 3u * s] = v.w;
    return;
  }
  if (ox < params.w) { dst[i] = v.x; }
  if (ox + 1u < params.w) { dst[i + s] = v.y; }
  if (ox + 2u < params.w) { dst[i + 2u * s] = v.z; }
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
