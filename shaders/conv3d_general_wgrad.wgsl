// conv3d_general_wgrad: partial sums of the weight gradient of conv3d_general.wgsl (kernel
// kd×KH×KW with KH, KW ≤ 3, strides (sd, sh, SW), padding (padD, padH, padW)):
//
//   G(o, i, t) = Σ_n Σ_(zo,yo,xo) gy[n, o, zo, yo, xo] · x[n, i, zo·sd + tz − padD,
//                                                         yo·sh + ty − padH,
//                                                         xo·SW + tx − padW]
//
// with x zero outside the volume. The N·OD·OH output rows are cut into `slices` runs of `len`
// rows; thread (tz, i, channel group og, slice s) adds its run for 4 output channels × the
// KH·KW taps of kernel plane tz and writes part[s·M + (o·Ci + i)·KT + t], M = Co·Ci·KT;
// conv3d_reduce.wgsl then adds the slices. Along an output row each of the KH input rows is
// read through a window of KW values that slides by SW (the values it keeps are not loaded
// again), so per output voxel: 4 values of gy and KH·min(KW, SW) of x for 4·KH·KW
// multiply-adds. KH, KW ≤ 3 and SW ≤ 2 are override constants and every register is named
// (see conv3d_general.wgsl). The same kernel is the weight gradient of the transposed
// convolution, with the roles of x and gy swapped (see src/ops/conv3d_general.ts).

override KH: u32 = 3u;
override KW: u32 = 3u;
override SW: u32 = 1u;

// x[row + x] when the row is inside and 0 ≤ x < W, else 0 (the index is clamped).
fn inputAt(ok: bool, row: u32, x: i32) -> f32 {
  let inside = ok && x >= 0 && u32(x) < params.w;
  return select(0.0, src[row + min(u32(max(x, 0)), params.w - 1u)], inside);
}

// One input row of the kernel plane: where it starts, whether it lies inside, and the KW
// values under the taps for the current output voxel.
struct Row {
  at: u32,
  ok: bool,
  win: vec3<f32>,
}

// Row ty for output row (n, zo, yo) at input plane z, its window at output voxel 0.
fn openRow(vol: u32, yo: u32, ty: u32) -> Row {
  let y = i32(yo * params.sh + ty) - i32(params.padH);
  let ok = y >= 0 && u32(y) < params.h;
  let at = (vol * params.h + min(u32(max(y, 0)), params.h - 1u)) * params.w;
  let x = -i32(params.padW);
  var win = vec3<f32>(inputAt(ok, at, x), 0.0, 0.0);
  if (KW > 1u) { win.y = inputAt(ok, at, x + 1); }
  if (KW > 2u) { win.z = inputAt(ok, at, x + 2); }
  return Row(at, ok, win);
}

// The window moved SW voxels on, to inputs xn .. xn + KW − 1: values still under the kernel
// are kept, the rest loaded. (The min() keeps the constant indices of branches that never run
// inside the vector, which validation requires.)
fn slide(r: Row, xn: i32) -> vec3<f32> {
  var w = r.win;
  if (SW < KW) { w.x = r.win[min(SW, 2u)]; } else { w.x = inputAt(r.ok, r.at, xn); }
  if (KW > 1u) {
    if (1u + SW < KW) {
      w.y = r.win[min(1u + SW, 2u)];
    } else {
      w.y = inputAt(r.ok, r.at, xn + 1);
    }
  }
  if (KW > 2u) { w.z = inputAt(r.ok, r.at, xn + 2); }
  return w;
}

// acc += gv ⊗ win: column tx = gv · win[tx].
fn accumulate(acc: mat3x4<f32>, gv: vec4<f32>, win: vec3<f32>) -> mat3x4<f32> {
  return acc + mat3x4<f32>(gv * win.x, gv * win.y, gv * win.z);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = threadIndex(wid, nwg, lid);
  if (g >= params.threads) { return; }
  let tz = g % params.kd;
  var r = g / params.kd;
  let i = r % params.ci;
  r = r / params.ci;
  let og = r % params.tilesO;
  let s = r / params.tilesO;

  let rows = params.n * params.od * params.oh;
  let first = s * params.len;
  let last = min(first + params.len, rows);
  // (n, zo, yo) of the first row, then stepped along with the row.
  var yo = first % params.oh;
  var zo = (first / params.oh) % params.od;
  var n = first / (params.oh * params.od);
  let ov = params.od * params.oh * params.ow;
  // Channels past Co read channel Co − 1; their sums are never written.
  let o0 = min(og * 4u, params.co - 1u) * ov;
  let o1 = min(og * 4u + 1u, params.co - 1u) * ov;
  let o2 = min(og * 4u + 2u, params.co - 1u) * ov;
  let o3 = min(og * 4u + 3u, params.co - 1u) * ov;
  // a{ty}: column tx = taps (tz, ty, tx) of the 4 channels.
  var a0: mat3x4<f32>;
  var a1: mat3x4<f32>;
  var a2: mat3x4<f32>;
  for (var q = first; q < last; q++) {
    let z = i32(zo * params.sd + tz) - i32(params.padD);
    if (z >= 0 && u32(z) < params.d) {
      let vol = (n * params.ci + i) * params.d + u32(z);
      var r0 = openRow(vol, yo, 0u);
      var r1: Row;
      var r2: Row;
      if (KH > 1u) { r1 = openRow(vol, yo, 1u); }
      if (KH > 2u) { r2 = openRow(vol, yo, 2u); }
      let grow = n * params.co * ov + (zo * params.oh + yo) * params.ow;
      for (var xo = 0u; xo < params.ow; xo++) {
        let at = grow + xo;
        let gv = vec4<f32>(gy[at + o0], gy[at + o1], gy[at + o2], gy[at + o3]);
        let xn = i32((xo + 1u) * SW) - i32(params.padW);
        a0 = accumulate(a0, gv, r0.win);
        r0.win = slide(r0, xn);
        if (KH > 1u) {
          a1 = accumulate(a1, gv, r1.win);
          r1.win = slide(r1, xn);
        }
        if (KH > 2u) {
          a2 = accumulate(a2, gv, r2.win);
          r2.win = slide(r2, xn);
        }
      }
    }
    yo++;
    if (yo == params.oh) {
      yo = 0u;
      zo++;
      if (zo == params.od) {
        zo = 0u;
        n++;
      }
    }
  }
  let kt = params.kd * KH * KW;
  for (var c = 0u; c < 4u; c++) {
    let o = og * 4u + c;
    if (o >= params.co) { return; }
    let at = s * params.m + (o * params.ci + i) * kt + tz * KH * KW;
    storeRow(at, a0, c);
    if (KH > 1u) { storeRow(at + KW, a1, c); }
    if (KH > 2u) { storeRow(at + 2u * KW, a2, c); }
  }
}

// The KW taps of one kernel row for channel c: part[at + tx] = acc[tx][c].
fn storeRow(at: u32, acc: mat3x4<f32>, c: u32) {
  part[at] = acc[0][c];
  if (KW > 1u) { part[at + 1u] = acc[1][c]; }
  if (KW > 2u) { part[at + 2u] = acc[2][c]; }
}
