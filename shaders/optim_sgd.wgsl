// SGD step with momentum (optionally Nesterov), in place over flat f32 tensors, PyTorch
// semantics. control = [scale, finite, norm] as for Adam: the gradient is scaled, and a
// finite flag of 0 leaves param and the momentum buffer untouched. Per element:
//   g = scale · grad + weightDecay · p
//   if momentum ≠ 0:  b = g on the first step, else momentum·b + (1 − dampening)·g
//                     g = g + momentum·b (Nesterov) or g = b
//   p −= lr · g
// 1 − dampening comes from the host, computed in float64.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= params.n || control[1] == 0.0) { return; }
  let p = param[i];
  var g = grad[i] * control[0] + params.weightDecay * p;
  if (params.momentum != 0.0) {
    var b = g;
    if (params.first == 0u) {
      b = params.momentum * momentumBuf[i] + params.oneMinusDampening * g;
    }
    momentumBuf[i] = b;
    if (params.nesterov == 1u) {
      g = g + params.momentum * b;
    } else {
      g = b;
    }
  }
  param[i] = p - params.lr * g;
}
