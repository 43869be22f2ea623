// Cross-entropy loss from the totals: loss = Σ w·nll / Σ w (stats = [Σ w·nll, Σ w]).

@compute @workgroup_size(1)
fn main() {
  loss[0] = stats[0] / stats[1];
}
