// Max pooling, kernel 2 stride 2, over the N·C volumes of a tensor [N,C,D,H,W] (x fastest).
// Odd sizes floor like PyTorch: the last plane, row or column of an odd axis is in no window.
// argmax[o] names the window input that won output o: bit 2 the z offset, bit 1 y, bit 0 x.
// Ties go to the first maximum in z, y, x order (PyTorch's); a NaN wins, as in PyTorch.
//
// STAGE 0 (forward):  src = x [N,C,D,H,W] → dst = y [N,C,Do,Ho,Wo], writes argmax.
// STAGE 1 (backward): src = gy [N,C,Do,Ho,Wo] → dst = gx [N,C,D,H,W], reads argmax. One thread
// per input element gathers its gradient (gy at the winners, zero elsewhere and on the dropped
// odd border), so there are no atomics and no separate zero fill.
// `total` counts the threads' elements: outputs in the forward, inputs in the backward.

override STAGE: u32 = 0;

// (x, y, z, volume n·C + c) of flat index i in volumes of d × h × w, x fastest.
fn voxelOf(i: u32, d: u32, h: u32, w: u32) -> vec4<u32> {
  let x = i % w;
  var t = i / w;
  let y = t % h;
  t = t / h;
  return vec4<u32>(x, y, t % d, t / d);
}

fn pool(o: u32) {
  let hw = params.inH * params.inW;
  let v = voxelOf(o, params.outD, params.outH, params.outW);
  let base = v.w * params.inD * hw + 2u * v.z * hw + 2u * v.y * params.inW + 2u * v.x;
  var best = src[base];
  var arg = 0u;
  for (var k = 1u; k < 8u; k++) {
    let v = src[base + (k >> 2u) * hw + ((k >> 1u) & 1u) * params.inW + (k & 1u)];
    if (v > best || v != v) {
      best = v;
      arg = k;
    }
  }
  dst[o] = best;
  argmax[o] = arg;
}

fn unpool(i: u32) {
  let v = voxelOf(i, params.inD, params.inH, params.inW);
  let x = v.x;
  let y = v.y;
  let z = v.z;
  let nc = v.w;
  var g = 0.0;
  if (z < 2u * params.outD && y < 2u * params.outH && x < 2u * params.outW) {
    let o = ((nc * params.outD + z / 2u) * params.outH + y / 2u) * params.outW + x / 2u;
    let k = (z & 1u) * 4u + (y & 1u) * 2u + (x & 1u);
    g = select(0.0, src[o], argmax[o] == k);
  }
  dst[i] = g;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  if (STAGE == 0u) { pool(i); } else { unpool(i); }
}
