// The store of the direct convolution kernels (conv3d.wgsl, K = 3, and conv3d_point.wgsl,
// K = 1): a row of 4 voxels × 4 channels plus bias, through the fused activation, to `dst` (an
// array of vec4s). A kernel that uses it declares the uniforms co, d, h, w, hasBias, act and
// actP, the bindings `bias` and `dst`, and the override constants MODE (1: y up-sampled by tap,
// the transposed convolution's output, see conv3d_point.wgsl) and VEC (1: W % 4 == 0).

// A row of 4 voxels × 4 channels plus bias. Straight-line code: on a CPU adapter loops and
// branches here cost more than the stores.
fn storeOutputRow(acc: mat4x4<f32>, bv: vec4<f32>, n: u32, o0: u32, oz: u32, oy: u32,
                  ox: u32) {
  if (oy >= params.h || ox >= params.w) { return; }
  let t = transpose(acc); // t[c]: channel o0 + c of the 4 voxels
  let t0 = act(t[0] + vec4<f32>(bv.x));
  let t1 = act(t[1] + vec4<f32>(bv.y));
  let t2 = act(t[2] + vec4<f32>(bv.z));
  let t3 = act(t[3] + vec4<f32>(bv.w));
  if (MODE == 1u && VEC == 1u && ox + 4u <= params.w) {
    // Channels o0 .. o0 + 3 are taps (b, c) = (0,0), (0,1), (1,0), (1,1) of one real channel
    // and plane offset a (o0 is a multiple of 4): two up-sampled rows of 8 values each, whole
    // aligned vec4s since 2W % 4 == 0.
    let i = yIndex(n, o0, oz, oy, ox) / 4u;
    let w2 = params.w / 2u; // vec4s per up-sampled row
    dst[i] = vec4<f32>(t0.x, t1.x, t0.y, t1.y);
    dst[i + 1u] = vec4<f32>(t0.z, t1.z, t0.w, t1.w);
    dst[i + w2] = vec4<f32>(t2.x, t3.x, t2.y, t3.y);
    dst[i + w2 + 1u] = vec4<f32>(t2.z, t3.z, t2.w, t3.w);
    return;
  }
  storeVoxels(t0, n, o0, oz, oy, ox);
  storeVoxels(t1, n, o0 + 1u, oz, oy, ox);
  storeVoxels(t2, n, o0 + 2u, oz, oy, ox);
  storeVoxels(t3, n, o0 + 3u, oz, oy, ox);
}

// The fused activation (see params.act above).
fn act(v: vec4<f32>) -> vec4<f32> {
  let pos = v > vec4<f32>(0.0);
  switch params.act {
    case 1u: { return max(v, vec4<f32>(0.0)); }
    case 2u: { return select(params.actP * v, v, pos); }
    case 3u: { return select(params.actP * (exp(v) - 1.0), v, pos); }
    default: { return v; }
  }
}

// Channel o of voxels ox .. ox + 3 (2 apart in MODE 1), those inside the volume: one aligned
// vec4 when VEC = 1 in MODE 0, else single floats (dst[i / 4][i % 4]).
fn storeVoxels(v: vec4<f32>, n: u32, o: u32, oz: u32, oy: u32, ox: u32) {
  if (o >= params.co) { return; }
  let i = yIndex(n, o, oz, oy, ox);
  if (MODE != 1u && VEC == 1u && ox + 4u <= params.w) {
    dst[i / 4u] = v;
    return;
  }
  let s = select(1u, 2u, MODE == 1u);
  storeAt(i, v.x);
  if (ox + 1u < params.w) { storeAt(i + s, v.y); }
  if (ox + 2u < params.w) { storeAt(i + 2u * s, v.z); }
  if (ox + 3u < params.w) { storeAt(i + 3u * s, v.w); }
}

fn storeAt(i: u32, v: f32) {
  dst[i / 4u][i % 4u] = v;
}

// The 4 bias values of channels o0 .. o0 + 3 (zero without bias or past Co).
fn biasVec(o0: u32) -> vec4<f32> {
  if (params.hasBias == 0u) { return vec4<f32>(); }
  return vec4<f32>(biasAt(o0), biasAt(o0 + 1u), biasAt(o0 + 2u), biasAt(o0 + 3u));
}

fn biasAt(o: u32) -> f32 {
  let oc = min(o, params.co - 1u);
  return select(0.0, bias[select(oc, oc >> 3u, MODE == 1u)], o < params.co);
}

fn yIndex(n: u32, o: u32, z: u32, y: u32, x: u32) -> u32 {
  if (MODE == 1u) {
    let tap = o & 7u;
    let d2 = 2u * params.d;
    let h2 = 2u * params.h;
    let w2 = 2u * params.w;
    let zz = 2u * z + (tap >> 2u);
    let yy = 2u * y + ((tap >> 1u) & 1u);
    let xx = 2u * x + (tap & 1u);
    return ((((n * (params.co >> 3u) + (o >> 3u)) * d2 + zz) * h2 + yy) * w2) + xx;
  }
  return (((n * params.co + o) * params.d + z) * params.h + y) * params.w + x;
}
