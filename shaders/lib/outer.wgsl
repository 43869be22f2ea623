// Outer product w ⊗ v: column j = w · v[j] (a 4×4 block of output channels × voxels).
fn outer(w: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(w * v.x, w * v.y, w * v.z, w * v.w);
}
