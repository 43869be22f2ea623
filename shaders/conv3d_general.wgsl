// conv3d_general: direct 3D convolution with a kernel kd×kh×KW, strides (sd, sh, SW) and
// zero padding (padD, padH, padW) per axis, from x [N, Ci, D, H, W] to y [N, Co, OD, OH, OW]:
//
//   y[n, o, zo, yo, xo] = b[o] + Σ_i Σ_(tz,ty,tx) W(o, i, t) · x[n, i, zo·sd + tz − padD,
//                                                                 yo·sh + ty − padH,
//                                                                 xo·SW + tx − padW]
//
// with x zero outside the volume. W comes packed by conv3d_pack.wgsl with GW = 8,
// pw[((og·Ci + i)·KT + t)·2 + h] = W(8·og + 4·h + j, i, t) in component j (zero past Co),
// t = (tz·kh + ty)·KW + tx: two vec4 loads give the 8 output channels of a tap. The same
// kernel is the input gradient of the transposed convolution (kernel = stride, no padding).
//
// Each thread owns 8 output channels × 4 output voxels along x (matrices lo and hi: column j
// is voxel j, row c channel c). Per input channel and input row it loads once the 3·SW + KW
// values its voxels read (the taps along x share them), then two weight vec4s per tap: with
// 1×3×3 at stride 1, 6 + 6 loads for 96 multiply-adds. KW ≤ 3 and SW ≤ 2 are override
// constants and every register is named (no arrays indexed in loops): on a CPU adapter an
// indexed private array lives in memory, where each access is a per-lane loop. The channel
// group is the slowest index of the thread grid, so a workgroup's threads read the same
// weights.

// Kernel size (1–3) and stride (1, 2) along x.
override KW: u32 = 3u;
override SW: u32 = 1u;
// Input values along x a thread reads: x0 .. x0 + SPAN − 1 (at most 9).
override SPAN: u32 = 3u * SW + KW;

// x[row + x] when 0 ≤ x < W, else 0 (the index is clamped before the read).
fn inputAt(row: u32, x: i32) -> f32 {
  let inside = x >= 0 && u32(x) < params.w;
  return select(0.0, src[row + min(u32(max(x, 0)), params.w - 1u)], inside);
}

// The inputs of tap tx for the 4 voxels, win[tx + SW·j], from the window (a, b, c) holding
// positions 0–3, 4–7 and 8. tx and SW are constants once inlined, so this folds to a swizzle.
fn tapInputs(a: vec4<f32>, b: vec4<f32>, c: f32, tx: u32) -> vec4<f32> {
  if (SW == 1u) {
    if (tx == 0u) { return a; }
    if (tx == 1u) { return vec4<f32>(a.yzw, b.x); }
    return vec4<f32>(a.zw, b.xy);
  }
  if (tx == 0u) { return vec4<f32>(a.xz, b.xz); }
  if (tx == 1u) { return vec4<f32>(a.yw, b.yw); }
  return vec4<f32>(a.z, b.xz, c);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = threadIndex(wid, nwg, lid);
  if (g >= params.threads) { return; }
  let xb = g % params.tilesX;
  var r = g / params.tilesX;
  let yo = r % params.oh;
  r = r / params.oh;
  let zo = r % params.od;
  r = r / params.od;
  let n = r % params.n;
  let og = r / params.n;

  let kt = params.kd * params.kh * KW;
  let plane = params.h * params.w;
  let x0 = i32(xb * 4u * SW) - i32(params.padW);
  var lo: mat4x4<f32>;
  var hi: mat4x4<f32>;
  for (var i = 0u; i < params.ci; i++) {
    let vol = (n * params.ci + i) * params.d * plane;
    let wi = (og * params.ci + i) * kt;
    for (var tz = 0u; tz < params.kd; tz++) {
      let z = i32(zo * params.sd + tz) - i32(params.padD);
      if (z < 0 || u32(z) >= params.d) { continue; }
      for (var ty = 0u; ty < params.kh; ty++) {
        let y = i32(yo * params.sh + ty) - i32(params.padH);
        if (y < 0 || u32(y) >= params.h) { continue; }
        let row = vol + u32(z) * plane + u32(y) * params.w;
        // The window; with KW < SW the positions between taps are never read.
        var a = vec4<f32>();
        var b = vec4<f32>();
        var c = 0.0;
        a.x = inputAt(row, x0);
        if (KW >= SW) { a.y = inputAt(row, x0 + 1); }
        a.z = inputAt(row, x0 + 2);
        if (SPAN > 3u && KW >= SW) { a.w = inputAt(row, x0 + 3); }
        if (SPAN > 4u) { b.x = inputAt(row, x0 + 4); }
        if (SPAN > 5u && KW >= SW) { b.y = inputAt(row, x0 + 5); }
        if (SPAN > 6u) { b.z = inputAt(row, x0 + 6); }
        if (SPAN > 7u) { b.w = inputAt(row, x0 + 7); }
        if (SPAN > 8u) { c = inputAt(row, x0 + 8); }
        let wt = 2u * (wi + (tz * params.kh + ty) * KW);
        var v = tapInputs(a, b, c, 0u);
        lo += outer(pw[wt], v);
        hi += outer(pw[wt + 1u], v);
        if (KW > 1u) {
          v = tapInputs(a, b, c, 1u);
          lo += outer(pw[wt + 2u], v);
          hi += outer(pw[wt + 3u], v);
        }
        if (KW > 2u) {
          v = tapInputs(a, b, c, 2u);
          lo += outer(pw[wt + 4u], v);
          hi += outer(pw[wt + 5u], v);
        }
      }
    }
  }
  let ov = params.od * params.oh * params.ow;
  let xo = xb * 4u;
  let at = n * params.co * ov + (zo * params.oh + yo) * params.ow + xo;
  storeVoxel(og, at, ov, lo[0], hi[0]);
  if (xo + 1u < params.ow) { storeVoxel(og, at + 1u, ov, lo[1], hi[1]); }
  if (xo + 2u < params.ow) { storeVoxel(og, at + 2u, ov, lo[2], hi[2]); }
  if (xo + 3u < params.ow) { storeVoxel(og, at + 3u, ov, lo[3], hi[3]); }
}

// One voxel's 8 channels: dst[at + o·ov] = v + b[o] for o = 8·og + c below Co.
fn storeVoxel(og: u32, at: u32, ov: u32, lo: vec4<f32>, hi: vec4<f32>) {
  for (var c = 0u; c < 8u; c++) {
    let o = og * 8u + c;
    if (o >= params.co) { return; }
    var b = 0.0;
    if (params.hasBias == 1u) { b = bias[o]; }
    dst[at + o * ov] = select(lo[c & 3u], hi[c & 3u], c >= 4u) + b;
  }
}
