/**
 * Side-by-side benchmark rows (src/cli/bench/agreement.ts): a speed ratio is given only when
 * both sides computed the same thing within the stated tolerance; otherwise the row says how
 * they disagree and carries no ratio.
 */

import { equal, match, ok } from "node:assert";
import {
  agreedRatio,
  FIRST_LOSS_TOLERANCE,
  LABELS_TOLERANCE,
  labelsAgreement,
  LOGITS_TOLERANCE,
  logitsAgreement,
  lossAgreement,
} from "../../src/cli/bench/agreement.ts";

Deno.test("first losses within the tolerance agree and give the ratio peer / voxseg", () => {
  const a = lossAgreement(1.629031, 1.629031 * (1 + FIRST_LOSS_TOLERANCE / 2));
  ok(a.agree);
  match(a.agreement, /^agree \(first loss 1\.62903 vs 1\.6298/);
  equal(agreedRatio(5800, 2900, a), 2);
});

Deno.test("first losses beyond the tolerance disagree: no ratio, the row says why", () => {
  const a = lossAgreement(1.629031, 1.629031 * (1 + 2 * FIRST_LOSS_TOLERANCE));
  ok(!a.agree);
  match(a.agreement, /^disagree: first loss 1\.62903 vs 1\.63229, relative difference 2\.0e-3/);
  equal(agreedRatio(5800, 2900, a), null);
});

Deno.test("a NaN loss on either side disagrees", () => {
  ok(!lossAgreement(Number.NaN, 1).agree);
  ok(!lossAgreement(1, Number.NaN).agree);
});

Deno.test("logits agree relative to the largest |logit|, and not across lengths", () => {
  const theirs = Float32Array.from([4, -2, 0.5, 1]);
  const close = theirs.map((v, i) => i === 1 ? v + 4 * LOGITS_TOLERANCE / 2 : v);
  const far = theirs.map((v, i) => i === 1 ? v + 4 * LOGITS_TOLERANCE * 2 : v);
  ok(logitsAgreement(close, theirs).agree);
  const d = logitsAgreement(far, theirs);
  ok(!d.agree);
  match(d.agreement, /^disagree: largest logit difference 2\.0e-3 of the largest logit/);
  ok(!logitsAgreement(theirs.subarray(1), theirs).agree);
});

Deno.test("labels agree when at least the stated share of voxels is equal", () => {
  const n = 10_000;
  const ours = new Uint8Array(n).fill(1);
  const allowed = Math.floor(n * (1 - LABELS_TOLERANCE));
  const theirs = ours.slice();
  theirs.fill(2, 0, allowed);
  ok(labelsAgreement(ours, theirs).agree);
  theirs.fill(2, 0, allowed + 1);
  const d = labelsAgreement(ours, theirs);
  ok(!d.agree);
  match(d.agreement, /^disagree: 99\.890 % of labels equal, tolerance 99\.9 %/);
  ok(!labelsAgreement(ours, theirs.subarray(1)).agree);
});

Deno.test("a stated tolerance replaces the default and is printed with the verdict", () => {
  // 2e-3 apart: beyond the default 1e-3, within a stated 5e-3.
  const [a, b] = [2, 2 * (1 + 2e-3)];
  ok(!lossAgreement(a, b).agree);
  const loose = lossAgreement(a, b, 5e-3);
  ok(loose.agree);
  match(loose.agreement, /tolerance 0\.005\)$/);
  const theirs = Float32Array.from([1, 2]);
  const ours = Float32Array.from([1, 2.01]);
  ok(!logitsAgreement(ours, theirs).agree);
  ok(logitsAgreement(ours, theirs, 1e-2).agree);
  const labels = Uint8Array.from([0, 1, 2, 1]);
  ok(!labelsAgreement(labels, Uint8Array.from([0, 1, 2, 2])).agree);
  ok(labelsAgreement(labels, Uint8Array.from([0, 1, 2, 2]), 0.75).agree);
});

Deno.test("a NaN logit on either side disagrees", () => {
  const theirs = Float32Array.from([1, 2, 3]);
  ok(!logitsAgreement(Float32Array.from([1, Number.NaN, 3]), theirs).agree);
  ok(!logitsAgreement(theirs, Float32Array.from([1, Number.NaN, 3])).agree);
});

Deno.test("no ratio against a zero or negative voxseg time, even when the sides agree", () => {
  const a = lossAgreement(1, 1);
  ok(a.agree);
  equal(agreedRatio(10, 0, a), null);
  equal(agreedRatio(10, -1, a), null);
});
