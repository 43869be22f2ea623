// Instance and batch normalisation, forward and backward, as eight stages of one module.
//
// Layout: x is [N, C, …spatial] contiguous with S spatial elements, so every (n, c) is a
// contiguous slab of S values. A statistics group is what one mean and variance cover:
//   instance norm: group g = n·C + c, one slab (slabs = 1);
//   batch norm:    group g = c, N slabs (slabs = N) that lie `slabStride` = C·S apart.
// Slab o of group g starts at o·slabStride + g·S. Element e (flat index) lies in slab
// b = e / S = n·C + c, and its group is c (perChannel = 1) or b (perChannel = 0).
// stats holds, per group, [2g] = mean and [2g + 1] = 1 / sqrt(biased variance + eps).
//
// Reductions over a group run in two passes so that any volume keeps the GPU busy: every
// slab is cut into `chunks` chunks of `chunk` elements, one workgroup per chunk (a strided
// loop, then a workgroup tree reduction) writes a partial result; then one workgroup per group
// reduces its `parts` = slabs·chunks partials. Partials are laid out group-major: workgroup
// w = g·parts + o·chunks + k. Mean and variance use Welford/Chan updates, exact enough for
// data far from zero mean (raw HU) where Σx² − (Σx)²/n would cancel.
//
// Stages (STAGE override), with the bindings each one reads → writes:
//   0 STATS_PARTIAL  x → part[3w…] = (count, mean, M2) of chunk w
//   1 STATS_FINAL    part → stats; with flag UPDATE_RUNNING also out = running mean and
//                    out2 = running variance, updated in place (unbiased variance, PyTorch's)
//   2 RUNNING_STATS  out = running mean, out2 = running variance → stats (eval mode)
//   3 NORMALIZE      x, stats, gamma, beta → out = y = x̂·γ + β, x̂ = (x − mean)·invStd
//   4 GRAD_PARTIAL   gy, x, stats → part[2w…] = (Σ gy, Σ gy·x̂) of chunk w
//   5 GRAD_FINAL     part → out[2g…] = (Σ gy, Σ gy·x̂) of group g
//   6 AFFINE_GRAD    part = group sums → out = ∂γ (flag HAS_GAMMA), out2 = ∂β (flag HAS_BETA),
//                    summing a channel's `groupsPerChannel` groups g = n·C + c
//   7 INPUT_GRAD     gy, x, stats, gamma, part = group sums → out = gx; with BATCH_STATS the
//                    full gradient through the mean and variance, otherwise γ·invStd·gy
// Flags: bit 0 HAS_GAMMA, bit 1 HAS_BETA, bit 2 UPDATE_RUNNING, bit 3 BATCH_STATS.

override STAGE: u32 = 0;

const HAS_GAMMA = 1u;
const HAS_BETA = 2u;
const UPDATE_RUNNING = 4u;
const BATCH_STATS = 8u;

var<workgroup> red: array<vec4<f32>, WG>;

fn hasFlag(f: u32) -> bool {
  return (params.flags & f) != 0u;
}

// Chan's merge of two (count, mean, M2) summaries.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  if (b.x == 0.0) { return a; }
  if (a.x == 0.0) { return b; }
  let n = a.x + b.x;
  let d = b.y - a.y;
  let f = b.x / n;
  return vec3(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// Tree reductions over the workgroup; every invocation must call them (uniform control flow).
fn reduceWelford(lid: u32, v: vec3<f32>) -> vec3<f32> {
  red[lid] = vec4(v, 0.0);
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] = vec4(merge(red[lid].xyz, red[lid + s].xyz), 0.0); }
    workgroupBarrier();
  }
  return red[0].xyz;
}

fn reduceSum(lid: u32, v: vec2<f32>) -> vec2<f32> {
  red[lid] = vec4(v, 0.0, 0.0);
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  return red[0].xy;
}

// The element range [start, end) of chunk w, as absolute indices into x, and its group.
struct Chunk { start: u32, end: u32, group: u32 };

fn chunkOf(w: u32) -> Chunk {
  let g = w / params.parts;
  let r = w - g * params.parts;
  let o = r / params.chunks;
  let k = r - o * params.chunks;
  let slab = o * params.slabStride + g * params.spatial;
  let start = k * params.chunk;
  let end = min(start + params.chunk, params.spatial);
  return Chunk(slab + start, slab + end, g);
}

fn groupOf(e: u32) -> vec2<u32> {
  let b = e / params.spatial;
  let c = b % params.channels;
  return vec2(select(b, c, params.perChannel == 1u), c);
}

fn statsPartial(w: u32, lid: u32) {
  let ch = chunkOf(w);
  var acc = vec3(0.0, 0.0, 0.0);
  for (var i = ch.start + lid; i < ch.end; i += WG) {
    let v = x[i];
    acc.x += 1.0;
    let d = v - acc.y;
    acc.y += d / acc.x;
    acc.z += d * (v - acc.y);
  }
  let r = reduceWelford(lid, acc);
  if (lid == 0u) {
    part[3u * w] = r.x;
    part[3u * w + 1u] = r.y;
    part[3u * w + 2u] = r.z;
  }
}

fn statsFinal(g: u32, lid: u32) {
  var acc = vec3(0.0, 0.0, 0.0);
  for (var p = lid; p < params.parts; p += WG) {
    let at = 3u * (g * params.parts + p);
    acc = merge(acc, vec3(part[at], part[at + 1u], part[at + 2u]));
  }
  let r = reduceWelford(lid, acc);
  if (lid == 0u) {
    let count = f32(params.count);
    stats[2u * g] = r.y;
    stats[2u * g + 1u] = 1.0 / sqrt(r.z / count + params.eps);
    if (hasFlag(UPDATE_RUNNING)) {
      let m = params.momentum;
      out[g] = (1.0 - m) * out[g] + m * r.y;
      out2[g] = (1.0 - m) * out2[g] + m * r.z / (count - 1.0);
    }
  }
}

fn runningStats(g: u32) {
  stats[2u * g] = out[g];
  stats[2u * g + 1u] = 1.0 / sqrt(out2[g] + params.eps);
}

fn applyNorm(e: u32) {
  let gc = groupOf(e);
  let xhat = (x[e] - stats[2u * gc.x]) * stats[2u * gc.x + 1u];
  let scale = select(1.0, gamma[gc.y], hasFlag(HAS_GAMMA));
  let shift = select(0.0, beta[gc.y], hasFlag(HAS_BETA));
  out[e] = xhat * scale + shift;
}

fn gradPartial(w: u32, lid: u32) {
  let ch = chunkOf(w);
  let mean = stats[2u * ch.group];
  let invStd = stats[2u * ch.group + 1u];
  var acc = vec2(0.0, 0.0);
  for (var i = ch.start + lid; i < ch.end; i += WG) {
    let g = gy[i];
    acc += vec2(g, g * (x[i] - mean) * invStd);
  }
  let r = reduceSum(lid, acc);
  if (lid == 0u) {
    part[2u * w] = r.x;
    part[2u * w + 1u] = r.y;
  }
}

fn gradFinal(g: u32, lid: u32) {
  var acc = vec2(0.0, 0.0);
  for (var p = lid; p < params.parts; p += WG) {
    let at = 2u * (g * params.parts + p);
    acc += vec2(part[at], part[at + 1u]);
  }
  let r = reduceSum(lid, acc);
  if (lid == 0u) {
    out[2u * g] = r.x;
    out[2u * g + 1u] = r.y;
  }
}

fn affineGrad(c: u32) {
  var sums = vec2(0.0, 0.0);
  for (var n = 0u; n < params.groupsPerChannel; n++) {
    let g = n * params.channels + c;
    sums += vec2(part[2u * g], part[2u * g + 1u]);
  }
  if (hasFlag(HAS_GAMMA)) { out[c] = sums.y; }
  if (hasFlag(HAS_BETA)) { out2[c] = sums.x; }
}

fn inputGrad(e: u32) {
  let gc = groupOf(e);
  let invStd = stats[2u * gc.x + 1u];
  let scale = select(1.0, gamma[gc.y], hasFlag(HAS_GAMMA)) * invStd;
  var g = gy[e];
  if (hasFlag(BATCH_STATS)) {
    let count = f32(params.count);
    let xhat = (x[e] - stats[2u * gc.x]) * invStd;
    g = g - part[2u * gc.x] / count - xhat * part[2u * gc.x + 1u] / count;
  }
  out[e] = scale * g;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = workgroupIndex(wid, nwg);
  let i = w * WG + lid;
  switch STAGE {
    case 0u: { if (w < params.groups * params.parts) { statsPartial(w, lid); } }
    case 1u: { if (w < params.groups) { statsFinal(w, lid); } }
    case 2u: { if (i < params.groups) { runningStats(i); } }
    case 3u: { if (i < params.total) { applyNorm(i); } }
    case 4u: { if (w < params.groups * params.parts) { gradPartial(w, lid); } }
    case 5u: { if (w < params.groups) { gradFinal(w, lid); } }
    case 6u: { if (i < params.channels) { affineGrad(i); } }
    default: { if (i < params.total) { inputGrad(i); } }
  }
}
