// Reverses axes of a contiguous tensor. The host merges runs of adjacent axes that are all
// flipped or all kept (reversing two adjacent axes reverses their merged axis), so any rank
// arrives as at most 6 axes d0…d5 (d5 fastest, unused leading ones 1); bit k of `mask` says
// axis dk is reversed. One thread per output element reads its mirrored input.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  var dims = array<u32, 6>(params.d0, params.d1, params.d2, params.d3, params.d4, params.d5);
  var rest = i;
  var stride = 1u;
  var src = 0u;
  for (var k = 5; k >= 0; k--) {
    let d = dims[k];
    let c = rest % d;
    rest = rest / d;
    let flipped = (params.mask >> u32(k)) & 1u;
    src += stride * select(c, d - 1u - c, flipped == 1u);
    stride *= d;
  }
  y[i] = x[src];
}
