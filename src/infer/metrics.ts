/** Overlap metrics between label maps. */

/**
 * Dice per class (index = class) of a predicted and a reference label map. A class absent from
 * both is NaN (undefined, excluded from means, as in nnU-Net).
 */
export function dicePerClass(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  classes: number,
): number[] {
  if (pred.length !== ref.length) {
    throw new Error(`dice: prediction has ${pred.length} voxels, reference ${ref.length}`);
  }
  const tp = new Float64Array(classes),
    np = new Float64Array(classes),
    nr = new Float64Array(classes);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i], r = ref[i];
    np[p]++;
    nr[r]++;
    if (p === r) tp[p]++;
  }
  return Array.from(
    { length: classes },
    (_, c) => np[c] + nr[c] === 0 ? NaN : (2 * tp[c]) / (np[c] + nr[c]),
  );
}

/** Mean of the finite values; NaN when there are none. */
export function nanMean(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : NaN;
}
