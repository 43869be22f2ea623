import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import {
  ctWindow,
  DEFAULT_CT_WINDOW,
  type Normalization,
  normalizationFromDataset,
  normalizeInPlace,
  normalizeValue,
  padIntensity,
  parseNormalization,
} from "../../src/data/normalize.ts";

const STATS = { mean: -500, std: 200, p0_5: -900, p99_5: 100, min: -1000, max: 300 };

function close(actual: ArrayLike<number>, expected: number[], tol = 1e-6) {
  strictEqual(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    ok(Math.abs(actual[i] - expected[i]) <= tol, `[${i}] ${actual[i]} vs ${expected[i]}`);
  }
}

Deno.test("ct-window −1000…400: clipped, scaled to 0..1", () => {
  const hu = Float32Array.of(-3024, -1000, -300, 0, 400, 1500);
  close(normalizeInPlace(hu, DEFAULT_CT_WINDOW), [0, 0, 0.5, 1000 / 1400, 1, 1]);
  close(normalizeInPlace(Float32Array.of(-160, 240), ctWindow(-160, 240)), [0, 1]);
});

Deno.test("zscore: clipped to the 0.5/99.5 percentiles, then foreground mean/std", () => {
  const norm = normalizationFromDataset({ name: "d", intensity: STATS }, "zscore");
  deepStrictEqual(norm, { kind: "zscore", clipLo: -900, clipHi: 100, mean: -500, std: 200 });
  const hu = Float32Array.of(-1000, -900, -500, -300, 100, 300);
  close(normalizeInPlace(hu, norm), [-2, -2, 0, 1, 3, 3]);
});

Deno.test("normalizationFromDataset: ct-window needs no statistics, zscore does", () => {
  deepStrictEqual(normalizationFromDataset({ name: "d", intensity: null }, "ct-window"), {
    kind: "ct-window",
    lo: -1000,
    hi: 400,
  });
  throws(() => normalizationFromDataset({ name: "d", intensity: null }, "zscore"), /no intensity/);
  const flat = normalizationFromDataset({ name: "d", intensity: { ...STATS, std: 0 } }, "zscore");
  ok(flat.kind === "zscore" && flat.std > 0, "a constant foreground must not divide by zero");
});

Deno.test("none leaves values unchanged", () => {
  close(normalizeInPlace(Float32Array.of(-5, 7), { kind: "none" }), [-5, 7]);
});

Deno.test("padIntensity is air: normalised 0 for a window, the lowest z-score otherwise", () => {
  strictEqual(normalizeValue(padIntensity(DEFAULT_CT_WINDOW), DEFAULT_CT_WINDOW), 0);
  const z = normalizationFromDataset({ name: "d", intensity: STATS }, "zscore");
  strictEqual(normalizeValue(padIntensity(z), z), -2);
});

Deno.test("parseNormalization round-trips JSON and names bad fields", () => {
  const norms: Normalization[] = [
    DEFAULT_CT_WINDOW,
    { kind: "zscore", clipLo: -900, clipHi: 100, mean: -500, std: 200 },
    { kind: "none" },
  ];
  for (const n of norms) deepStrictEqual(parseNormalization(JSON.parse(JSON.stringify(n))), n);
  throws(() => parseNormalization({ kind: "ct-window", lo: 400, hi: -1000 }), /lo 400/);
  throws(() => parseNormalization({ kind: "zscore", clipLo: 0, clipHi: 1, mean: 0 }), /std/);
  throws(() => parseNormalization({ kind: "minmax" }), /unknown normalisation kind "minmax"/);
  throws(() => ctWindow(0, 0), /below/);
});
