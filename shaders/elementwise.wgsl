// Elementwise maps over flat f32 arrays, read and written as vec4s: one thread per 4 elements.
// The last vec4 may run past n into the buffer's padding (pool buffers are whole multiples of
// 256 bytes), which is read and written but belongs to no tensor. On a CPU adapter every load
// and store is a per-lane loop, so a vec4 costs about what a float does: 4 elements per
// thread is ~3× faster than one. The workgroup grid may be folded into x and y (see grid1d),
// so the flat index is rebuilt from both (threadIndex, shaders/lib/grid.wgsl). OP selects the
// function at pipeline creation (an override constant), so every variant shares one module.

override OP: u32 = 0;

// Unary: y = f(x); binary: y = f(a, b). `p0` and `p1` are op parameters (alpha, slope…).
fn apply(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  let pos = a > vec4<f32>(0.0);
  switch OP {
    case 0u: { return a + b; }                               // add
    case 1u: { return a - b; }                               // sub
    case 2u: { return a * b; }                               // mul
    case 3u: { return params.p0 * a + params.p1 * b; }       // axpby
    case 4u: { return params.p0 * a + params.p1; }           // affine (scale, shift)
    case 5u: { return max(a, vec4<f32>(0.0)); }              // relu
    case 6u: { return select(params.p0 * a, a, pos); }       // leaky relu
    case 7u: { return select(params.p0 * (exp(a) - 1.0), a, pos); } // elu
    // Backward: a = upstream gradient, b = forward input x.
    case 8u: { return select(vec4<f32>(0.0), a, b > vec4<f32>(0.0)); }        // relu'
    case 9u: { return select(params.p0 * a, a, b > vec4<f32>(0.0)); }          // leaky relu'
    case 10u: { return select(params.p0 * exp(b) * a, a, b > vec4<f32>(0.0)); } // elu'
    // The same from the forward output y = b (for activations fused into a convolution):
    // y > 0 exactly where x > 0, and for ELU alpha·exp(x) = y + alpha.
    case 11u: { return select(vec4<f32>(0.0), a, b > vec4<f32>(0.0)); }        // relu'(y)
    case 12u: { return select(params.p0 * a, a, b > vec4<f32>(0.0)); }          // leaky'(y)
    case 13u: { return select((b + params.p0) * a, a, b > vec4<f32>(0.0)); }     // elu'(y)
    default: { return a; }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = threadIndex(wid, nwg, lid);
  if (i >= (params.n + 3u) / 4u) { return; }
  // Unary ops pass the same buffer as both a and b.
  y[i] = apply(a[i], b[i]);
}
