// conv3d forward (and input gradient): direct convolution as an implicit GEMM, stride 1,
// "same" padding P = (K - 1) / 2 for K = 3 or K = 1.
//
//   y[n, o, z, y, x] = b[o] + Σ_i Σ_{kz,ky,kx} W(o, i, kz, ky, kx) · x[n, i, z+kz-P, y+ky-P, x+kx-P]
//
// W is read through strides: W(o, i, t) = w[wBase + o·wO + i·wI + t·wT] with t = (kz·K + ky)·K + kx.
// Forward: wO = Ci·K³, wI = K³, wT = 1. Input gradient (conv of gy with the channel-swapped,
// tap-flipped kernel): wO = K³, wI = Co·K³, wT = -1, wBase = K³ - 1.
//
// A workgroup computes a tile of 4·CG output channels × (2·BZ, 4·BY, 4·BX) voxels of one batch
// item. Each thread owns a register block of 4 channels × 2×4×4 voxels: 8 mat4x4 accumulators,
// one per (z, y) row, whose column dx holds the 4 channels of voxel dx. For each chunk of
// CI_CHUNK input channels the workgroup stages the input patch (with halo, zero padded) and the
// weights into workgroup memory as vec4s. Per input channel a thread then loads its 27 weight
// vec4s and 4 planes × 6 rows × 2 vec4 of input once each and issues 864 vec4 FMAs: on a CPU
// adapter every workgroup-memory load is a per-lane gather, so FMAs per load is what counts.

override K: u32 = 3u;
override CG: u32 = 4u;
override BX: u32 = 2u;
override BY: u32 = 2u;
override BZ: u32 = 4u;
override CI_CHUNK: u32 = 4u;

// Voxels per thread along z, y, x (the register block) — fixed; the loops below assume them.
const VZ: u32 = 2u;
const VY: u32 = 4u;
const VX: u32 = 4u;

override WG: u32 = CG * BZ * BY * BX;
override KT: u32 = K * K * K;
override PAD: u32 = (K - 1u) / 2u;
// Staged input tile extent: z, y in voxels, x in vec4 (each row padded to a multiple of 4).
override SZ: u32 = BZ * VZ + K - 1u;
override SY: u32 = BY * VY + K - 1u;
override SX: u32 = (BX * VX + K - 1u + 3u) / 4u;
override XS_LEN: u32 = CI_CHUNK * SZ * SY * SX;
override WS_LEN: u32 = CI_CHUNK * KT * CG;

// xs[ci][zz][yy][sx]: input patch starting at (z0 - P, y0 - P, x0 - P), zero outside the volume.
var<workgroup> xs: array<vec4<f32>, XS_LEN>;
// ws[ci][tap][cg]: weights of output channels coBase + 4·cg + (0..3).
var<workgroup> ws: array<vec4<f32>, WS_LEN>;

fn loadX(nBase: u32, ci: u32, gz: i32, gy: i32, gx: i32) -> f32 {
  let inside = ci < params.ci && gz >= 0 && gz < i32(params.d) && gy >= 0 &&
    gy < i32(params.h) && gx >= 0 && gx < i32(params.w);
  if (!inside) { return 0.0; }
  return x[nBase + ((ci * params.d + u32(gz)) * params.h + u32(gy)) * params.w + u32(gx)];
}

fn loadW(o: u32, ci: u32, t: u32) -> f32 {
  if (o >= params.co || ci >= params.ci) { return 0.0; }
  return w[u32(params.wBase + i32(o) * params.wO + i32(ci) * params.wI + i32(t) * params.wT)];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Flat workgroup index → (n, channel tile, z tile, y tile, x tile); x tiles fastest.
  var g = wid.x + wid.y * nwg.x;
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
  let nBase = n * params.ci * params.d * params.h * params.w;

  // Thread → register block; bx fastest so neighbouring threads write neighbouring voxels.
  let bx = lid % BX;
  let by = (lid / BX) % BY;
  let bz = (lid / (BX * BY)) % BZ;
  let cg = lid / (BX * BY * BZ);

  var z0acc: Acc4; // dz = 0
  var z1acc: Acc4; // dz = 1

  for (var c0 = 0u; c0 < params.ci; c0 += CI_CHUNK) {
    workgroupBarrier();
    for (var i = lid; i < XS_LEN; i += WG) {
      let sx = i % SX;
      let yy = (i / SX) % SY;
      let zz = (i / (SX * SY)) % SZ;
      let ci = c0 + i / (SX * SY * SZ);
      let gz = i32(z0 + zz) - i32(PAD);
      let gy = i32(y0 + yy) - i32(PAD);
      let gx = i32(x0 + sx * 4u) - i32(PAD);
      xs[i] = vec4<f32>(
        loadX(nBase, ci, gz, gy, gx),
        loadX(nBase, ci, gz, gy, gx + 1),
        loadX(nBase, ci, gz, gy, gx + 2),
        loadX(nBase, ci, gz, gy, gx + 3),
      );
    }
    for (var i = lid; i < WS_LEN; i += WG) {
      let c = i % CG;
      let t = (i / CG) % KT;
      let ci = c0 + i / (CG * KT);
      let o = coBase + c * 4u;
      ws[i] = vec4<f32>(
        loadW(o, ci, t),
        loadW(o + 1u, ci, t),
        loadW(o + 2u, ci, t),
        loadW(o + 3u, ci, t),
      );
    }
    workgroupBarrier();

    for (var cl = 0u; cl < CI_CHUNK; cl++) {
      // Row (plane p, row r) of this thread's input window starts at vec4 xs[base + (p·SY + r)·SX].
      let base = ((cl * SZ + bz * VZ) * SY + by * VY) * SX + bx;
      if (K == 1u) {
        let wk = ws[cl * CG + cg];
        z0acc = plane1(z0acc, wk, base);
        z1acc = plane1(z1acc, wk, base + SY * SX);
        continue;
      }
      let t = cl * 27u * CG + cg;
      let wz0 = loadWz(t);
      let wz1 = loadWz(t + 9u * CG);
      let wz2 = loadWz(t + 18u * CG);
      // Input plane p feeds output plane dz through kernel plane kz = p - dz.
      let r0 = loadRows(base);
      z0acc = plane3(z0acc, wz0, r0);
      let r1 = loadRows(base + SY * SX);
      z0acc = plane3(z0acc, wz1, r1);
      z1acc = plane3(z1acc, wz0, r1);
      let r2 = loadRows(base + 2u * SY * SX);
      z0acc = plane3(z0acc, wz2, r2);
      z1acc = plane3(z1acc, wz1, r2);
      let r3 = loadRows(base + 3u * SY * SX);
      z1acc = plane3(z1acc, wz2, r3);
    }
  }

  let o0 = coBase + cg * 4u;
  let oz = z0 + bz * VZ;
  let oy = y0 + by * VY;
  let ox = x0 + bx * VX;
  storeRows(z0acc, n, o0, oz, oy, ox);
  storeRows(z1acc, n, o0, oz + 1u, oy, ox);
}

// Accumulators of one output plane: a{dy}, column dx = the 4 channels of voxel dx.
struct Acc4 { a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32> }
// One kernel plane kz: w{ky}, column kx = the 4 channels' weights of tap (kz, ky, kx).
struct Wz { w0: mat3x4<f32>, w1: mat3x4<f32>, w2: mat3x4<f32> }
// 6 input rows of one plane; row r = (p{r}.xyzw, q{r}.xy) are the inputs x - P .. x + 4 - P.
struct Rows6 {
  p0: vec4<f32>, q0: vec4<f32>, p1: vec4<f32>, q1: vec4<f32>, p2: vec4<f32>, q2: vec4<f32>,
  p3: vec4<f32>, q3: vec4<f32>, p4: vec4<f32>, q4: vec4<f32>, p5: vec4<f32>, q5: vec4<f32>,
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
    xs[b], xs[b + 1u], xs[b + SX], xs[b + SX + 1u],
    xs[b + 2u * SX], xs[b + 2u * SX + 1u], xs[b + 3u * SX], xs[b + 3u * SX + 1u],
    xs[b + 4u * SX], xs[b + 4u * SX + 1u], xs[b + 5u * SX], xs[b + 5u * SX + 1u],
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

// K = 1: each output row is its input row times one weight vec4.
fn plane1(a: Acc4, w: vec4<f32>, b: u32) -> Acc4 {
  return Acc4(
    outer1(a.a0, w, xs[b]),
    outer1(a.a1, w, xs[b + SX]),
    outer1(a.a2, w, xs[b + 2u * SX]),
    outer1(a.a3, w, xs[b + 3u * SX]),
  );
}

// One input row through one kernel row: voxel dx sees inputs dx .. dx + 2 of (p.xyzw, q.xy);
// w holds the 3 taps (kx) of 4 channels.
fn row3(acc: mat4x4<f32>, w: mat3x4<f32>, p: vec4<f32>, q: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(w[2], vec4<f32>(p.z), fma(w[1], vec4<f32>(p.y), fma(w[0], vec4<f32>(p.x), acc[0]))),
    fma(w[2], vec4<f32>(p.w), fma(w[1], vec4<f32>(p.z), fma(w[0], vec4<f32>(p.y), acc[1]))),
    fma(w[2], vec4<f32>(q.x), fma(w[1], vec4<f32>(p.w), fma(w[0], vec4<f32>(p.z), acc[2]))),
    fma(w[2], vec4<f32>(q.y), fma(w[1], vec4<f32>(q.x), fma(w[0], vec4<f32>(p.w), acc[3]))),
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

fn storeRows(a: Acc4, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  store(a.a0, n, o0, oz, oy, ox);
  store(a.a1, n, o0, oz, oy + 1u, ox);
  store(a.a2, n, o0, oz, oy + 2u, ox);
  store(a.a3, n, o0, oz, oy + 3u, ox);
}

// Writes a row of 4 voxels × 4 channels, skipping what lies outside the output.
fn store(acc: mat4x4<f32>, n: u32, o0: u32, oz: u32, oy: u32, ox: u32) {
  if (oz >= params.d || oy >= params.h) { return; }
  let t = transpose(acc); // t[c] = channel o0 + c of the 4 voxels
  for (var c = 0u; c < 4u; c++) {
    let o = o0 + c;
    if (o >= params.co) { return; }
    var bias = 0.0;
    if (params.hasBias != 0u) { bias = b[o]; }
    let base = ((n * params.co + o) * params.d + oz) * params.h * params.w + oy * params.w + ox;
    let v = t[c];
    for (var dx = 0u; dx < 4u; dx++) {
      if (ox + dx < params.w) { y[base + dx] = v[dx] + bias; }
    }
  }
}
