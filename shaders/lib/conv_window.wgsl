// The input window of the direct convolution (conv3d.wgsl) and of its weight gradient
// (conv3d_wgrad.wgsl): the rows of one input plane that a register block of 4 rows × VX voxels
// reads, each with its x halo. A kernel that uses it declares the uniforms ci, d, h, w, the
// bindings `src` (the input), `srcv` (the same buffer as vec4s) and `xt` (its texel texture,
// read when TEX = 1), the input layout as
// `fn xRow(n, ci, z, y) -> u32` (index of voxel x = 0 of a row, in range) with `X_STEP` (the
// step from one x to the next), and `fn loadRow(n, ci, z, y, x0)` (the row window, usually
// `rowWindow`).

// Kernel size: 3 (padding 1) or 1.
override K: u32 = 3u;
// Output voxels along x per thread: 4 or 8.
override VX: u32 = 8u;
// 1: rows are read as aligned vec4s (W % 4 == 0); 0: as checked single floats.
override VEC: u32 = 1u;
override PAD: u32 = (K - 1u) / 2u;
// 1: rows are read from the texture `xt`, the input buffer copied unchanged into rgba32float
// texels by src/gpu/texture.ts (vec4 t of the buffer at texel (t % 4096, t / 4096)), instead
// of from srcv and src; needs VEC = 1 and X_STEP = 1. On a CPU adapter a texel fetch is a
// 16-byte load per lane, where a storage load is a loop over the SIMD lanes (see inputBinding
// in src/ops/tuning.ts). 0: storage.
override TEX: u32 = 0u;
// log2 of the texels per texture row (TEXEL_ROW_SHIFT in src/gpu/texture.ts).
const TEXEL_ROW_SHIFT: u32 = 12u;

// 6 input rows of one plane; row r holds inputs x - P .. x + 5 - P in (p{r}.xyzw, q{r}.xy).
struct WindowRows {
  p0: vec4<f32>, q0: vec4<f32>,
  p1: vec4<f32>, q1: vec4<f32>,
  p2: vec4<f32>, q2: vec4<f32>,
  p3: vec4<f32>, q3: vec4<f32>,
  p4: vec4<f32>, q4: vec4<f32>,
  p5: vec4<f32>, q5: vec4<f32>,
}

// One input plane of the window: voxels x .. x + 3 in lo, x + 4 .. x + 7 in hi.
struct Plane {
  lo: WindowRows,
  hi: WindowRows,
}

// Rows y0 - P .. y0 + 3 + P of input channel ci at grid plane z (zero outside the volume).
fn loadPlane(n: u32, ci: u32, z: i32, y0: u32, x0: u32) -> Plane {
  let y = i32(y0) - i32(PAD);
  let a = loadRow(n, ci, z, y, x0);
  let b = loadRow(n, ci, z, y + 1, x0);
  let c = loadRow(n, ci, z, y + 2, x0);
  let d = loadRow(n, ci, z, y + 3, x0);
  var e: array<vec4<f32>, 4>;
  var f: array<vec4<f32>, 4>;
  if (K == 3u) {
    e = loadRow(n, ci, z, y + 4, x0);
    f = loadRow(n, ci, z, y + 5, x0);
  }
  return Plane(
    WindowRows(a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1], e[0], e[1], f[0], f[1]),
    WindowRows(a[2], a[3], b[2], b[3], c[2], c[3], d[2], d[3], e[2], e[3], f[2], f[3]),
  );
}

// Whether row (ci, z, y) lies in the input; ci ≥ Ci happens for K = 1 in conv3d.wgsl, whose
// steps of 4 channels run past Ci.
fn rowInside(ci: u32, z: i32, y: i32) -> bool {
  return ci < params.ci && u32(z) < params.d && u32(y) < params.h;
}

// Index of voxel x = 0 of row (n, ci, z, y) clamped into the volume (read, then masked).
fn rowStart(n: u32, ci: u32, z: i32, y: i32) -> u32 {
  return xRow(n, min(ci, params.ci - 1u), min(u32(z), params.d - 1u), min(u32(y), params.h - 1u));
}

// Inputs x0 - P .. x0 + VX - 1 + P of one f32 row, as the (p, q) pairs of the lo and hi
// halves: [p_lo, q_lo, p_hi, q_hi] with p_lo.x at x0 - P. Zero outside the volume.
fn rowWindow(n: u32, ci: u32, z: i32, y: i32, x0: u32) -> array<vec4<f32>, 4> {
  let ok = rowInside(ci, z, y);
  let row = rowStart(n, ci, z, y);
  var a: vec4<f32>; // x0 .. x0 + 3
  var b: vec4<f32>; // x0 + 4 .. x0 + 7 (VX = 8)
  // Texel of x0 (TEX = 1).
  let t = (row + x0) / 4u;
  if (TEX == 1u) {
    a = select(vec4<f32>(), xTexel(t), ok && x0 < params.w);
    if (VX == 8u) { b = select(vec4<f32>(), xTexel(t + 1u), ok && x0 + 4u < params.w); }
  } else if (VEC == 1u) {
    // W % 4 == 0: a vec4 starting in the row lies wholly inside it.
    a = select(vec4<f32>(), srcv[(row + x0) / 4u], ok && x0 < params.w);
    if (VX == 8u) {
      b = select(vec4<f32>(), srcv[(row + x0) / 4u + 1u], ok && x0 + 4u < params.w);
    }
  } else {
    a = vec4<f32>(loadX(ok, row, i32(x0)), loadX(ok, row, i32(x0) + 1),
                  loadX(ok, row, i32(x0) + 2), loadX(ok, row, i32(x0) + 3));
    if (VX == 8u) {
      b = vec4<f32>(loadX(ok, row, i32(x0) + 4), loadX(ok, row, i32(x0) + 5),
                    loadX(ok, row, i32(x0) + 6), loadX(ok, row, i32(x0) + 7));
    }
  }
  if (K == 1u) {
    return array<vec4<f32>, 4>(a, vec4<f32>(), b, vec4<f32>());
  }
  if (TEX == 1u) {
    // Rows and x0 start at multiples of 4 (W % 4 == 0), so the halo values are the last value
    // of the texel before x0 and the first of the texel after the block.
    let lOk = ok && x0 > 0u;
    let rOk = ok && x0 + VX < params.w;
    let l = select(0.0, xTexel(select(t, t - 1u, lOk)).w, lOk);
    let r = select(0.0, xTexel(select(t, t + VX / 4u, rOk)).x, rOk);
    return withHalo(l, a, b, r);
  }
  return withHalo(loadX(ok, row, i32(x0) - 1), a, b, loadX(ok, row, i32(x0 + VX)));
}

// Texel t of the input's texture (TEX = 1): x[4t .. 4t + 3] of the buffer.
fn xTexel(t: u32) -> vec4<f32> {
  let mask = (1u << TEXEL_ROW_SHIFT) - 1u;
  return textureLoad(xt, vec2<u32>(t & mask, t >> TEXEL_ROW_SHIFT), 0);
}

// K = 3: the row window from its values x0 .. x0 + 7 (a, b; b unused for VX = 4) and the halo
// values l at x0 - 1 and r at x0 + VX.
fn withHalo(l: f32, a: vec4<f32>, b: vec4<f32>, r: f32) -> array<vec4<f32>, 4> {
  if (VX == 4u) {
    return array<vec4<f32>, 4>(vec4<f32>(l, a.xyz), vec4<f32>(a.w, r, 0.0, 0.0), vec4<f32>(),
                               vec4<f32>());
  }
  return array<vec4<f32>, 4>(vec4<f32>(l, a.xyz), vec4<f32>(a.w, b.x, 0.0, 0.0),
                             vec4<f32>(a.w, b.xyz), vec4<f32>(b.w, r, 0.0, 0.0));
}

// x at column x of a row (zero outside the row or when the row is out of the volume).
fn loadX(rowOk: bool, row: u32, x: i32) -> f32 {
  let at = row + u32(clamp(x, 0, i32(params.w) - 1)) * X_STEP;
  return select(0.0, src[at], rowOk && u32(x) < params.w);
}
