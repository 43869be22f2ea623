/**
 * Side-by-side benchmarks compare speed only where both sides computed the same thing. Each
 * suite checks what its two sides produced — the first loss of a training step, the logits of a
 * forward pass, the labels of a sliding-window prediction — against the tolerance here, and
 * prints a speed ratio only when they agree; otherwise the row carries `agreement: "disagree:
 * …"` and a null ratio, since a faster wrong answer is no result.
 *
 * The tolerances: both sides compute in f32 from the same weights and inputs, in different
 * summation orders, so the first loss agrees to about 1e-6 and the logits to about 1e-5 of the
 * largest logit; labels differ only where two classes' probabilities nearly tie.
 */

/** Largest relative difference of the first losses (before any update). */
export const FIRST_LOSS_TOLERANCE = 1e-3;

/** Largest difference of the logits, relative to the largest |logit|. */
export const LOGITS_TOLERANCE = 1e-3;

/** Smallest fraction of voxels whose arg-max labels agree. */
export const LABELS_TOLERANCE = 0.999;

/** Whether two sides agreed, and the words a result row prints. */
export interface Agreement {
  agree: boolean;
  /** "agree (…)" or "disagree: …", with the figures compared and the tolerance. */
  agreement: string;
}

/** First losses a (voxseg) and b (the peer), relative to a; NaN or ∞ on either side disagrees. */
export function lossAgreement(a: number, b: number, tolerance = FIRST_LOSS_TOLERANCE): Agreement {
  const rel = Math.abs(a - b) / Math.max(Math.abs(a), 1e-30);
  const agree = Number.isFinite(rel) && rel <= tolerance;
  return verdict(
    agree,
    `first loss ${fmt(a)} vs ${fmt(b)}, relative difference ${rel.toExponential(1)}, ` +
      `tolerance ${tolerance}`,
  );
}

/** Largest logit difference relative to the largest |logit| of the peer's. */
export function logitsAgreement(
  ours: Float32Array,
  theirs: Float32Array,
  tolerance = LOGITS_TOLERANCE,
): Agreement {
  if (ours.length !== theirs.length) {
    return verdict(false, `logits of ${ours.length} and ${theirs.length} values`);
  }
  let diff = 0, scale = 0;
  for (let i = 0; i < ours.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - theirs[i]));
    scale = Math.max(scale, Math.abs(theirs[i]));
  }
  const rel = diff / Math.max(scale, 1e-30);
  return verdict(
    Number.isFinite(rel) && rel <= tolerance,
    `largest logit difference ${rel.toExponential(1)} of the largest logit, ` +
      `tolerance ${tolerance}`,
  );
}

/** Fraction of equal labels. */
export function labelsAgreement(
  ours: ArrayLike<number>,
  theirs: ArrayLike<number>,
  tolerance = LABELS_TOLERANCE,
): Agreement {
  if (ours.length !== theirs.length) {
    return verdict(false, `labels of ${ours.length} and ${theirs.length} voxels`);
  }
  let same = 0;
  for (let i = 0; i < ours.length; i++) if (ours[i] === theirs[i]) same++;
  const frac = same / Math.max(ours.length, 1);
  return verdict(
    frac >= tolerance,
    `${(100 * frac).toFixed(3)} % of labels equal, tolerance ${100 * tolerance} %`,
  );
}

/** `peer / ours` (> 1: voxseg is faster) when the sides agree, else null. */
export function agreedRatio(peer: number, ours: number, a: Agreement): number | null {
  return a.agree && ours > 0 ? peer / ours : null;
}

function verdict(agree: boolean, detail: string): Agreement {
  return { agree, agreement: agree ? `agree (${detail})` : `disagree: ${detail}` };
}

function fmt(v: number): string {
  return Number.isFinite(v) ? String(+v.toPrecision(6)) : String(v);
}
