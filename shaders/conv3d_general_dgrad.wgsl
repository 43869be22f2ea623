// conv3d_general_dgrad: the adjoint of conv3d_general.wgsl, a gather over the taps that reach
// each input voxel. For a convolution with kernel kd×kh×KW, strides (sd, sh, SW) and padding
// (padD, padH, padW) from a grid D×H×W to OD×OH×OW,
//
//   gx[n, c, z, y, x] = b[c] + Σ_o Σ_t W(o, c, t) · gy[n, o, zo, yo, xo]
//
// over the taps t = (tz, ty, tx) with z + padD − tz = zo·sd (likewise y, x) and the output
// voxel inside OD×OH×OW. It is the input gradient of the convolution (b absent) and the
// forward pass of the transposed convolution with kernel = stride and no padding (b its
// bias). W comes packed by conv3d_pack.wgsl with GW = 8: pw[((cg·Co + o)·KT + t)·2 + h]
// holds W(o, 8·cg + 4·h + j, t) in component j, zero past C.
//
// Each thread owns 8 channels × 4 voxels along x spaced by SW, x = ph + SW·(4·qb + j)
// (matrices lo and hi: column j is voxel j, row c channel c). They share the phase
// ph = x mod SW, hence the taps tx that reach them (tx ≡ ph + padW mod SW), and tap m of the
// phase reads gy at xo = 4·qb + j + cHigh − m, consecutive in j. So per output row the thread
// loads once the 3 + MAXT values of gy its taps read, then two weight vec4s per tap: with
// 1×3×3 at stride 1, 6 + 6 loads for 96 multiply-adds. Only the taps of the voxel's phase
// are visited, so no work goes to taps off the stride grid. KW ≤ 3 and SW ≤ 2 are override
// constants and every register is named (see conv3d_general.wgsl).

// Kernel size (1–3) and stride (1, 2) along x.
override KW: u32 = 3u;
override SW: u32 = 1u;
// Taps along x of one phase, at most (≤ 3); a thread reads 3 + MAXT values of a gy row.
override MAXT: u32 = (KW + SW - 1u) / SW;

// gy[row + xo] when 0 ≤ xo < OW, else 0 (the index is clamped before the read).
fn gradAt(row: u32, xo: i32) -> f32 {
  let inside = xo >= 0 && u32(xo) < params.ow;
  return select(0.0, gy[row + min(u32(max(xo, 0)), params.ow - 1u)], inside);
}

// Window values k .. k + 3 of the window (a, b) holding positions 0–3 and 4–5; k is a
// constant once inlined, so this folds to a swizzle.
fn shifted(a: vec4<f32>, b: vec4<f32>, k: u32) -> vec4<f32> {
  if (k == 0u) { return a; }
  if (k == 1u) { return vec4<f32>(a.yzw, b.x); }
  return vec4<f32>(a.zw, b.xy);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = threadIndex(wid, nwg, lid);
  if (g >= params.threads) { return; }
  let qb = g % params.tilesQ;
  var r = g / params.tilesQ;
  let ph = r % SW;
  r = r / SW;
  let y = r % params.h;
  r = r / params.h;
  let z = r % params.d;
  r = r / params.d;
  let n = r % params.n;
  let cg = r / params.n;
  let x = ph + SW * qb * 4u;
  if (x >= params.w) { return; }

  let kt = params.kd * params.kh * KW;
  let oplane = params.oh * params.ow;
  let zp = z + params.padD;
  let yp = y + params.padH;
  // Taps along x of this phase: tx = t0 + m·SW for m < nt, reading xo = q0 + j + cHigh − m.
  let xp = ph + params.padW;
  let t0 = xp % SW;
  let nt = select(0u, (KW - t0 + SW - 1u) / SW, t0 < KW);
  // The window starts at the lowest xo that tap MAXT − 1 would read: tap m reads window
  // positions MAXT − 1 − m + j.
  let base = i32(qb * 4u) + i32((xp - t0) / SW) - i32(MAXT - 1u);
  var lo: mat4x4<f32>;
  var hi: mat4x4<f32>;
  for (var o = 0u; o < params.co; o++) {
    let vol = (n * params.co + o) * params.od * oplane;
    let wo = (cg * params.co + o) * kt;
    // zo = (z + padD − tz) / sd falls as tz rises: stop once it would be negative.
    for (var tz = zp % params.sd; tz < params.kd && tz <= zp; tz += params.sd) {
      let zo = (zp - tz) / params.sd;
      if (zo >= params.od) { continue; }
      for (var ty = yp % params.sh; ty < params.kh && ty <= yp; ty += params.sh) {
        let yo = (yp - ty) / params.sh;
        if (yo >= params.oh) { continue; }
        let row = vol + zo * oplane + yo * params.ow;
        let a = vec4<f32>(gradAt(row, base), gradAt(row, base + 1), gradAt(row, base + 2),
                          gradAt(row, base + 3));
        var b = vec4<f32>();
        if (MAXT > 1u) { b.x = gradAt(row, base + 4); }
        if (MAXT > 2u) { b.y = gradAt(row, base + 5); }
        let wt = 2u * (wo + (tz * params.kh + ty) * KW + t0);
        if (nt > 0u) {
          let v = shifted(a, b, MAXT - 1u);
          lo += outer(pw[wt], v);
          hi += outer(pw[wt + 1u], v);
        }
        if (MAXT > 1u && nt > 1u) {
          let v = shifted(a, b, MAXT - 2u);
          lo += outer(pw[wt + 2u * SW], v);
          hi += outer(pw[wt + 2u * SW + 1u], v);
        }
        if (MAXT > 2u && nt > 2u) {
          let v = shifted(a, b, 0u);
          lo += outer(pw[wt + 4u * SW], v);
          hi += outer(pw[wt + 4u * SW + 1u], v);
        }
      }
    }
  }
  let at = ((n * params.cx) * params.d + z) * params.h * params.w + y * params.w + x;
  let cv = params.d * params.h * params.w;
  storeVoxel(cg, at, cv, lo[0], hi[0]);
  if (x + SW < params.w) { storeVoxel(cg, at + SW, cv, lo[1], hi[1]); }
  if (x + 2u * SW < params.w) { storeVoxel(cg, at + 2u * SW, cv, lo[2], hi[2]); }
  if (x + 3u * SW < params.w) { storeVoxel(cg, at + 3u * SW, cv, lo[3], hi[3]); }
}

// One voxel's 8 channels: dst[at + c·cv] = v + b[c] for c = 8·cg + k below C.
fn storeVoxel(cg: u32, at: u32, cv: u32, lo: vec4<f32>, hi: vec4<f32>) {
  for (var k = 0u; k < 8u; k++) {
    let c = cg * 8u + k;
    if (c >= params.cx) { return; }
    var b = 0.0;
    if (params.hasBias == 1u) { b = bias[c]; }
    dst[at + c * cv] = select(lo[k & 3u], hi[k & 3u], k >= 4u) + b;
  }
}
