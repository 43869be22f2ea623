// SGD step with momentum over several parameter tensors ("sets") in one dispatch, in place;
// the multi-tensor form of optim_sgd.wgsl with the same per-element operations in the same
// order.
//
// Set k binds param_k, grad_k and momentumBuf_k and holds the elements [end(k−1), end(k)) of
// the grid (end(−1) = 0); the line //@sets becomes one branch per set (src/ops/multi_tensor.ts),
// which runs sgdElement on element j of that set and, with momentum, stores the buffer. Empty
// sets pad the last dispatch of a step. control as in optim_sgd.wgsl: finite = 0 leaves every
// set untouched.

// [param, momentum buffer] after one step of one element: optim_sgd.wgsl's operations, in its
// order. `buf` is only used when momentum ≠ 0 and this is not the first step.
fn sgdElement(p: f32, grad: f32, buf: f32, scale: f32) -> vec2<f32> {
  var g = grad * scale + params.weightDecay * p;
  var b = g;
  if (params.momentum != 0.0) {
    if (params.first == 0u) {
      b = params.momentum * buf + params.oneMinusDampening * g;
    }
    if (params.nesterov == 1u) {
      g = g + params.momentum * b;
    } else {
      g = b;
    }
  }
  return vec2<f32>(p - params.lr * g, b);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (control[1] == 0.0) { return; }
  let scale = control[0];
  //@sets
}
