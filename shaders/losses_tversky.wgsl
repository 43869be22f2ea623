// Tversky statistics, first pass: per sample n, class c and tile of voxels, the partial sums
//   TP = Σ p·g,  FP = Σ p·(1 − g),  FN = Σ (1 − p)·g
// with p = probs[n, c, v] (layout [N, C, V], V = D·H·W) and g = (labels[n, v] == c).
// Workgroup wg covers row nc = n·C + c (rows = N·C) and tile wg mod groups. Output layout
// [3, rows, groups] (TP block, FP block, FN block), which reduceRows sums to [3, rows].
// Labels are assumed in 0..C−1 (the host cannot check them without a readback).

override ITEMS: u32 = 4;

var<workgroup> tpPart: array<f32, WG>;
var<workgroup> fpPart: array<f32, WG>;
var<workgroup> fnPart: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = workgroupIndex(wid, nwg);
  if (wg >= params.rows * params.groups) { return; }
  let nc = wg / params.groups;
  let tile = wg - nc * params.groups;
  let n = nc / params.classes;
  let c = nc - n * params.classes;
  let pBase = nc * params.voxels;
  let lBase = n * params.voxels;

  var tp = 0.0;
  var fp = 0.0;
  var fneg = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let v = tile * WG * ITEMS + k * WG + lid;
    if (v < params.voxels) {
      let p = probs[pBase + v];
      let g = select(0.0, 1.0, labels[lBase + v] == c);
      tp += p * g;
      fp += p - p * g;
      fneg += g - p * g;
    }
  }
  tpPart[lid] = tp;
  fpPart[lid] = fp;
  fnPart[lid] = fneg;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      tpPart[lid] = tpPart[lid] + tpPart[lid + s];
      fpPart[lid] = fpPart[lid] + fpPart[lid + s];
      fnPart[lid] = fnPart[lid] + fnPart[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let block = params.rows * params.groups;
    partials[wg] = tpPart[0];
    partials[block + wg] = fpPart[0];
    partials[2u * block + wg] = fnPart[0];
  }
}
