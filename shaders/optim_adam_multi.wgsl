// Adam / AdamW step over several parameter tensors ("sets") in one dispatch, in place; the
// multi-tensor form of optim_adam.wgsl with the same per-element operations in the same order.
//
// Set k binds param_k, grad_k, m_k and v_k and holds the elements [end(k−1), end(k)) of the
// grid (end(−1) = 0); the line //@sets becomes one branch per set (src/ops/multi_tensor.ts),
// which runs adamElement on element j of that set. Empty sets (end(k) = end(k−1)) pad the last
// dispatch of a step. control = [scale, finite, norm] as in optim_adam.wgsl: finite = 0 leaves
// every set untouched.

override DECOUPLED: u32 = 0;

// [param, m, v] after one step of one element: optim_adam.wgsl's operations, in its order.
fn adamElement(param: f32, grad: f32, m: f32, v: f32, scale: f32) -> vec3<f32> {
  var g = grad * scale;
  var p = param;
  if (DECOUPLED == 1u) {
    p = p * params.decay;
  } else {
    g = g + params.weightDecay * p;
  }
  let mi = params.beta1 * m + params.oneMinusBeta1 * g;
  let vi = params.beta2 * v + params.oneMinusBeta2 * g * g;
  return vec3<f32>(p - params.stepSize * mi / (sqrt(vi) * params.invSqrtBc2 + params.eps), mi, vi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (control[1] == 0.0) { return; }
  let scale = control[0];
  //@sets
}
