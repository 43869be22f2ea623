// Row-wise sums by workgroup tree reduction, one pass of a multi-pass reduction.
//
// Input `x`, from element `inOffset`, holds `rows` contiguous rows of `len` values. Each
// workgroup sums one tile of WG·ITEMS consecutive values of one row and writes scale·sum to
// y[outOffset + row·groups + tile], where groups = ceil(len / (WG·ITEMS)). The host repeats
// passes until groups is 1. The addition order depends only on len, WG and ITEMS, never on
// scheduling, so results are bit-reproducible. SQUARE = 1 sums x² instead of x.
// WG must be a power of two (the tree halves it).

override ITEMS: u32 = 4;
override SQUARE: u32 = 0;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // The grid may be folded into x and y (grid1d); the flat index is uniform per workgroup.
  let wg = workgroupIndex(wid, nwg);
  if (wg >= params.rows * params.groups) { return; }
  let row = wg / params.groups;
  let tile = wg - row * params.groups;
  let start = tile * WG * ITEMS;
  let base = params.inOffset + row * params.len;

  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = start + k * WG + lid;
    if (i < params.len) {
      let v = x[base + i];
      acc += select(v, v * v, SQUARE == 1u);
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { y[params.outOffset + wg] = params.scale * partial[0]; }
}
