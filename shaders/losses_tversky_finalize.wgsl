// Tversky loss from the per-(sample, class) totals, and the coefficients its backward needs.
//
// stats: [3, N·C] = TP, FP, FN. weights: [C], the class weights with 0 for excluded classes
// (background when it is not included); W = Σ weights > 0 (checked on the host).
// A group is one sample (batch = 0) or the whole batch (batch = 1, totals summed over n).
//   TI = A / B,  A = TP + smooth,  B = TP + α·FP + β·FN + smooth
//   loss = (1 / groups) Σ_group Σ_c w_c (1 − TI) / W
// Since ∂TP/∂p = g, ∂FP/∂p = 1 − g, ∂FN/∂p = −g, the gradient of the loss w.r.t. p[n, c, v]
// takes one of two values per (n, c): coef[2·nc] where g = 0 and coef[2·nc + 1] where g = 1:
//   ∂loss/∂TI = −w_c / (W · groups)
//   g = 0:  ∂TI/∂p = −A·α / B²        g = 1:  ∂TI/∂p = 1/B − A·(1 − β) / B²
// The work is tiny (N·C terms), so one invocation does it in a fixed order.

@compute @workgroup_size(1)
fn main() {
  let C = params.classes;
  let N = params.samples;
  let rows = N * C;
  var groups = N;
  if (params.batch == 1u) { groups = 1u; }
  var wsum = 0.0;
  for (var c = 0u; c < C; c++) { wsum += weights[c]; }

  var total = 0.0;
  for (var gi = 0u; gi < groups; gi++) {
    for (var c = 0u; c < C; c++) {
      var tp = 0.0;
      var fp = 0.0;
      var fneg = 0.0;
      if (params.batch == 1u) {
        for (var n = 0u; n < N; n++) {
          tp += stats[n * C + c];
          fp += stats[rows + n * C + c];
          fneg += stats[2u * rows + n * C + c];
        }
      } else {
        tp = stats[gi * C + c];
        fp = stats[rows + gi * C + c];
        fneg = stats[2u * rows + gi * C + c];
      }
      let a = tp + params.smoothing;
      let b = tp + params.alpha * fp + params.beta * fneg + params.smoothing;
      let w = weights[c];
      total += w * (1.0 - a / b);
      let dti = -w / (wsum * f32(groups));
      let d0 = dti * (-a * params.alpha / (b * b));
      let d1 = dti * (1.0 / b - a * (1.0 - params.beta) / (b * b));
      if (params.batch == 1u) {
        for (var n = 0u; n < N; n++) {
          coef[2u * (n * C + c)] = d0;
          coef[2u * (n * C + c) + 1u] = d1;
        }
      } else {
        coef[2u * (gi * C + c)] = d0;
        coef[2u * (gi * C + c) + 1u] = d1;
      }
    }
  }
  loss[0] = total / (wsum * f32(groups));
}
