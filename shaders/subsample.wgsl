// Strided subsampling of the three trailing axes: y[n, z, y, x] = x[n, sd·z, sh·y, sw·x], the
// leading axes merged into n. Words are copied as bits, so labels (u32) and floats alike pass.
// One thread per output element.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let ox = i % params.ow;
  let r = i / params.ow;
  let oy = r % params.oh;
  let r2 = r / params.oh;
  let oz = r2 % params.od;
  let n = r2 / params.od;
  y[i] = x[((n * params.d + oz * params.sd) * params.h + oy * params.sh) * params.w +
           ox * params.sw];
}
