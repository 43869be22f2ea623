/** Whole-image intensity statistics of a case (for per-case z-score normalisation). */

/** Mean, population standard deviation, min and max of a case's image voxels. */
export interface ImageStats {
  mean: number;
  std: number;
  min: number;
  max: number;
}

/** {@link imageStats} over data that arrives in parts (the planes of a streamed volume). */
export class StatsAccumulator {
  /** The first value: sums of differences from it keep the variance exact for large offsets. */
  #shift = 0;
  #n = 0;
  #sum = 0;
  #sq = 0;
  #min = Infinity;
  #max = -Infinity;

  add(data: ArrayLike<number>): void {
    if (this.#n === 0 && data.length > 0) this.#shift = data[0];
    const shift = this.#shift;
    let sum = 0, sq = 0, min = this.#min, max = this.#max;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      const d = v - shift;
      sum += d;
      sq += d * d;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    this.#sum += sum;
    this.#sq += sq;
    this.#min = min;
    this.#max = max;
    this.#n += data.length;
  }

  /** The statistics so far; NaN mean and std when nothing was added. */
  result(): ImageStats {
    if (this.#n === 0) return { mean: NaN, std: NaN, min: NaN, max: NaN };
    const m = this.#sum / this.#n;
    return {
      mean: this.#shift + m,
      std: Math.sqrt(Math.max(this.#sq / this.#n - m * m, 0)),
      min: this.#min,
      max: this.#max,
    };
  }
}

/** Mean, population standard deviation, min and max of `data`, summed in float64. */
export function imageStats(data: ArrayLike<number>): ImageStats {
  const acc = new StatsAccumulator();
  acc.add(data);
  return acc.result();
}
