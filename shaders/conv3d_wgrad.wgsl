// conv3d weight gradient, partial sums: the correlation of gy and x, K = 3 (P = 1) or K = 1,
//
//   G(o, i, t) = Σ_n Σ_v gy[n, o, v] · x[n, i, v + t - P]      t = (kz·K + ky)·K + kx
//
// is a reduction over N·D·H·W. Workgroup (o tile, i tile, slice s) sums the voxel tiles
// s, s + S, s + 2S, …; each thread owns 4 channels o × RI channels i × K³ taps (K = 3: RI = 1;
// K = 1: RI = 4, an outer product per voxel) and one voxel block of every tile, and writes its
// sum to partial slot j = s·NB + block:
// part[j·M + o·gO + i·gI + t]. conv3d_reduce.wgsl then adds the S·NB slots. With gO = Ci·K³,
// gI = K³ the result is in PyTorch's [Co, Ci, K, K, K] order; other strides serve the
// transposed convolution (MODE 1, K = 1: gy is [N, Co/8, 2D, 2H, 2W] seen as 8 channels per
// real channel over the D×H×W grid, channel o = 8·c + tap is gy[c, 2v + tap]).
//
// Per tile the workgroup stages gy (4 channels per vec4, per voxel) and the x patch with halo
// in workgroup memory. Per block of 2×4×4 voxels a thread loads 32 gy vec4s and 4 planes × 6
// rows × 2 vec4 of x and issues 864 vec4 FMAs into 27 vec4 accumulators (K = 3). Wide tiles
// (up to 32 o × 16 i) let each staged value serve many threads: on a CPU adapter a staged
// global load costs several times a workgroup-memory load.

override K: u32 = 3u;
override MODE: u32 = 0u;
override CG: u32 = 4u;  // o groups of 4 channels
override TI: u32 = 4u;  // i channels per workgroup
override RI: u32 = 1u;  // i channels per thread: 1 for K = 3, 4 for K = 1
override BX: u32 = 2u;  // voxel blocks per tile along x, y, z
override BY: u32 = 1u;
override BZ: u32 = 2u;

// Voxels per block along z, y, x; the helpers below are written for them.
const VZ: u32 = 2u;
const VY: u32 = 4u;
const VX: u32 = 4u;

override NB: u32 = BZ * BY * BX;
override TT: u32 = TI / RI; // threads along i
override WG: u32 = CG * TT * NB;
override KT: u32 = K * K * K;
override PAD: u32 = (K - 1u) / 2u;
override TZ: u32 = BZ * VZ;
override TY: u32 = BY * VY;
override TX: u32 = BX * VX;
override SZ: u32 = TZ + K - 1u;
override SY: u32 = TY + K - 1u;
override SX: u32 = (TX + K - 1u + 3u) / 4u;
override XS_LEN: u32 = TI * SZ * SY * SX;
override GS_LEN: u32 = TZ * TY * TX * CG;

// xs[i][zz][yy][sx]: x patch from (z0 - P, y0 - P, x0 - P), zero outside the volume.
var<workgroup> xs: array<vec4<f32>, XS_LEN>;
// gs[z][y][x][cg]: gy of channels oBase + 4·cg + (0..3), zero outside the volume.
var<workgroup> gs: array<vec4<f32>, GS_LEN>;

// gy of one block plane: a{dy} for the 4 rows, column dx = the 4 channels at voxel dx.
struct Gy4 {
  a0: mat4x4<f32>,
  a1: mat4x4<f32>,
  a2: mat4x4<f32>,
  a3: mat4x4<f32>,
}

// Accumulators of kernel plane kz: g{ky}, column kx = the 4 channels' gradient at (kz, ky, kx).
struct Gz {
  g0: mat3x4<f32>,
  g1: mat3x4<f32>,
  g2: mat3x4<f32>,
}

// 6 x rows of one plane; row r holds x - P .. x + 5 - P in (p{r}.xyzw, q{r}.xy).
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
  var g = wid.x + wid.y * nwg.x;
  if (g >= params.groups) { return; }
  let s = g % params.slices;
  g /= params.slices;
  let ti = g % params.tilesI;
  let oBase = (g / params.tilesI) * 4u * CG;
  let iBase = ti * TI;

  // Thread → (cg, ii, block); blocks fastest.
  let bx = lid % BX;
  let by = (lid / BX) % BY;
  let bz = (lid / (BX * BY)) % BZ;
  let ii = (lid / NB) % TT; // this thread's i channels: iBase + ii·RI + (0 .. RI - 1)
  let cg = lid / (NB * TT);

  var kz0: Gz; // K = 3, kernel planes kz = 0, 1, 2
  var kz1: Gz;
  var kz2: Gz;
  var k1: mat4x4<f32>; // K = 1: column r = channel iBase + ii·4 + r, 4 channels o per column

  let tiles = params.n * params.tilesZ * params.tilesY * params.tilesX;
  for (var q = s; q < tiles; q += params.slices) {
    var r = q;
    let tx = r % params.tilesX;
    r /= params.tilesX;
    let ty = r % params.tilesY;
    r /= params.tilesY;
    let tz = r % params.tilesZ;
    let n = r / params.tilesZ;
    let x0 = tx * TX;
    let y0 = ty * TY;
    let z0 = tz * TZ;

    workgroupBarrier();
    for (var e = lid; e < XS_LEN; e += WG) {
      let sx = e % SX;
      let yy = (e / SX) % SY;
      let zz = (e / (SX * SY)) % SZ;
      let i = iBase + e / (SX * SY * SZ);
      xs[e] = loadX4(n, i, z0 + zz, y0 + yy, x0 + sx * 4u);
    }
    // Voxels fastest, so neighbouring lanes read neighbouring addresses.
    for (var e = lid; e < GS_LEN; e += WG) {
      let v = e % (TZ * TY * TX);
      let c = e / (TZ * TY * TX);
      let xx = x0 + v % TX;
      let yy = y0 + (v / TX) % TY;
      let zz = z0 + v / (TX * TY);
      gs[v * CG + c] = loadGy4(n, oBase + 4u * c, zz, yy, xx);
    }
    workgroupBarrier();

    // gy row (dz, dy) of this block starts at gs[gb + (dz·TY + dy)·TX·CG]; x row (p, r) at
    // xs[xb + (p·SY + r)·SX].
    let gb = ((bz * VZ * TY + by * VY) * TX + bx * VX) * CG + cg;
    let xb = ((ii * SZ + bz * VZ) * SY + by * VY) * SX + bx;
    if (K == 1u) {
      // No halo: row (dz, dy) of channel ii·4 + r is the vec4 xs[xb1 + r·plane + (dz·SY + dy)·SX].
      let xb1 = ((ii * RI * SZ + bz * VZ) * SY + by * VY) * SX + bx;
      let plane = SZ * SY * SX;
      for (var dz = 0u; dz < VZ; dz++) {
        for (var dy = 0u; dy < VY; dy++) {
          let at = xb1 + (dz * SY + dy) * SX;
          k1 = rows1(k1, gyRow(gb + (dz * TY + dy) * TX * CG), xs[at], xs[at + plane],
                     xs[at + 2u * plane], xs[at + 3u * plane]);
        }
      }
      continue;
    }
    let gy0 = gyPlane(gb);
    let gy1 = gyPlane(gb + TY * TX * CG);
    // x plane p meets gy plane dz through kernel plane kz = p - dz.
    let r0 = loadRows(xb);
    kz0 = planeG(kz0, gy0, r0);
    let r1 = loadRows(xb + SY * SX);
    kz1 = planeG(kz1, gy0, r1);
    kz0 = planeG(kz0, gy1, r1);
    let r2 = loadRows(xb + 2u * SY * SX);
    kz2 = planeG(kz2, gy0, r2);
    kz1 = planeG(kz1, gy1, r2);
    let r3 = loadRows(xb + 3u * SY * SX);
    kz2 = planeG(kz2, gy1, r3);
  }

  // Partial slot of this thread; every (o, i) in range is written once per slot.
  let slot = (s * NB + (bz * BY + by) * BX + bx) * params.m;
  for (var c = 0u; c < 4u; c++) {
    let o = oBase + 4u * cg + c;
    if (o >= params.co) { return; }
    if (K == 1u) {
      for (var r = 0u; r < RI; r++) {
        let i = iBase + ii * RI + r;
        if (i < params.ci) { part[slot + o * params.gO + i * params.gI] = k1[r][c]; }
      }
      continue;
    }
    let i = iBase + ii;
    if (i >= params.ci) { return; }
    let at = slot + o * params.gO + i * params.gI;
    storeGz(at, kz0, c);
    storeGz(at + 9u, kz1, c);
    storeGz(at + 18u, kz2, c);
  }
}

// Component c (a channel o) of the 9 taps of one kernel plane, to part[at + ky·3 + kx].
fn storeGz(at: u32, g: Gz, c: u32) {
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

// gy of channels o .. o + 3 at grid voxel (z, y, x); zero outside the volume or past Co.
fn loadGy4(n: u32, o: u32, z: u32, y: u32, x: u32) -> vec4<f32> {
  let inside = z < params.d && y < params.h && x < params.w;
  let oc = min(o, params.co - 1u);
  let zc = min(z, params.d - 1u);
  let yc = min(y, params.h - 1u);
  let xc = min(x, params.w - 1u);
  // Channel o + k sits step[k] after channel o (o is a multiple of 4).
  var at = (((n * params.co + oc) * params.d + zc) * params.h + yc) * params.w + xc;
  var step = vec4<u32>(0u, 1u, 2u, 3u) * params.d * params.h * params.w;
  if (MODE == 1u) {
    // Channel 8·c + tap of the up-sampled gy: voxel (2z + a, 2y + b, 2x + cc), tap = 4a + 2b + cc.
    let tap = oc & 7u;
    let w2 = 2u * params.w;
    let zz = 2u * zc + (tap >> 2u);
    let yy = 2u * yc + ((tap >> 1u) & 1u);
    at = (((n * (params.co >> 3u) + (oc >> 3u)) * 2u * params.d + zz) * 2u * params.h + yy) * w2 +
      2u * xc + (tap & 1u);
    step = vec4<u32>(0u, 1u, w2, w2 + 1u);
  }
  let ok = vec4<bool>(inside) & (vec4<u32>(o) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.co));
  let idx = at + select(vec4<u32>(0u), step, ok);
  return select(vec4<f32>(), vec4<f32>(gy[idx.x], gy[idx.y], gy[idx.z], gy[idx.w]), ok);
}

// 4 consecutive x values from staged position (zs, ys, xs0) = grid position + P; zero outside.
fn loadX4(n: u32, i: u32, zs: u32, ys: u32, xs0: u32) -> vec4<f32> {
  let z = i32(zs) - i32(PAD);
  let y = i32(ys) - i32(PAD);
  let x = i32(xs0) - i32(PAD);
  let rowOk = i < params.ci && z >= 0 && z < i32(params.d) && y >= 0 && y < i32(params.h);
  let ic = min(i, params.ci - 1u);
  let zc = u32(clamp(z, 0, i32(params.d) - 1));
  let yc = u32(clamp(y, 0, i32(params.h) - 1));
  let row = (((n * params.ci + ic) * params.d + zc) * params.h + yc) * params.w;
  return vec4<f32>(loadX1(rowOk, row, x), loadX1(rowOk, row, x + 1), loadX1(rowOk, row, x + 2),
                   loadX1(rowOk, row, x + 3));
}

fn loadX1(rowOk: bool, row: u32, x: i32) -> f32 {
  let ok = rowOk && x >= 0 && x < i32(params.w);
  return select(0.0, src[row + u32(clamp(x, 0, i32(params.w) - 1))], ok);
}

fn gyRow(b: u32) -> mat4x4<f32> {
  return mat4x4<f32>(gs[b], gs[b + CG], gs[b + 2u * CG], gs[b + 3u * CG]);
}

fn gyPlane(b: u32) -> Gy4 {
  return Gy4(gyRow(b), gyRow(b + TX * CG), gyRow(b + 2u * TX * CG), gyRow(b + 3u * TX * CG));
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

// One x plane against one gy plane: kernel row ky pairs gy row dy with x row dy + ky.
fn planeG(k: Gz, g: Gy4, r: Rows6) -> Gz {
  return Gz(
    rowG(rowG(rowG(rowG(k.g0, g.a0, r.p0, r.q0), g.a1, r.p1, r.q1), g.a2, r.p2, r.q2), g.a3,
         r.p3, r.q3),
    rowG(rowG(rowG(rowG(k.g1, g.a0, r.p1, r.q1), g.a1, r.p2, r.q2), g.a2, r.p3, r.q3), g.a3,
         r.p4, r.q4),
    rowG(rowG(rowG(rowG(k.g2, g.a0, r.p2, r.q2), g.a1, r.p3, r.q3), g.a2, r.p4, r.q4), g.a3,
         r.p5, r.q5),
  );
}

// Tap kx of one kernel row: Σ_dx gy(voxel dx) · x(dx + kx), x = (p.xyzw, q.xy).
fn rowG(k: mat3x4<f32>, g: mat4x4<f32>, p: vec4<f32>, q: vec4<f32>) -> mat3x4<f32> {
  return mat3x4<f32>(
    fma(g[3], vec4<f32>(p.w), fma(g[2], vec4<f32>(p.z), fma(g[1], vec4<f32>(p.y),
      fma(g[0], vec4<f32>(p.x), k[0])))),
    fma(g[3], vec4<f32>(q.x), fma(g[2], vec4<f32>(p.w), fma(g[1], vec4<f32>(p.z),
      fma(g[0], vec4<f32>(p.y), k[1])))),
    fma(g[3], vec4<f32>(q.y), fma(g[2], vec4<f32>(q.x), fma(g[1], vec4<f32>(p.w),
      fma(g[0], vec4<f32>(p.z), k[2])))),
  );
}

// K = 1, one row of 4 voxels: column r += Σ_dx gy(voxel dx) · x_r(dx) for 4 channels i.
fn rows1(k: mat4x4<f32>, g: mat4x4<f32>, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>,
         p3: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(row1(k[0], g, p0), row1(k[1], g, p1), row1(k[2], g, p2), row1(k[3], g, p3));
}

fn row1(k: vec4<f32>, g: mat4x4<f32>, p: vec4<f32>) -> vec4<f32> {
  return fma(g[3], vec4<f32>(p.w), fma(g[2], vec4<f32>(p.z), fma(g[1], vec4<f32>(p.y),
    fma(g[0], vec4<f32>(p.x), k))));
}
