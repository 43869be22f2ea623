import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import type { CaseEntry, Split } from "../../src/data/dataset.ts";
import {
  DEFAULT_CT_WINDOW,
  type Normalization,
  normalizeInPlace,
  normalizeValue,
  padIntensity,
} from "../../src/data/normalize.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import { Random } from "../../src/base/random.ts";
import {
  augmentationFromFlags,
  augmentPatch,
  flipAxis,
  normalizationTable,
  type PatchRequest,
  patchSampler,
  readPatch,
} from "../../src/data/sampler.ts";
import { synthCase } from "../../src/data/synth.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { withTempDir } from "./temp_dir.ts";

/** A case entry with `perClass[k]` random coordinates of class k + 1. */
function entry(id: string, shape: Shape3, perClass: number[], split: Split = "train"): CaseEntry {
  const rng = new Random(id.length * 7 + shape[0]);
  const foreground = [
    [],
    ...perClass.map((n) => {
      const coords: number[] = [];
      for (let j = 0; j < n; j++) coords.push(...shape.map((s) => rng.int(0, s)));
      return coords;
    }),
  ];
  return {
    id,
    path: `cases/${id}.zarr`,
    split,
    shape,
    spacingMm: [2.5, 0.8, 0.8],
    hasLabel: true,
    voxelsPerClass: [1000, ...perClass],
    foreground,
  };
}

const DATASET = {
  name: "t",
  cases: [
    entry("both", [40, 80, 96], [50, 20]),
    entry("lung", [40, 80, 96], [50, 0]),
    entry("tiny", [16, 30, 30], [10, 5]),
    entry("held", [40, 80, 96], [50, 20], "val"),
  ],
};
const PATCH: Shape3 = [24, 48, 48];

function take(n: number, options: Partial<Parameters<typeof patchSampler>[1]> = {}) {
  const sampler = patchSampler(DATASET, { patchSize: PATCH, seed: 5, ...options });
  return Array.from({ length: n }, () => sampler.next().value);
}

function contains(r: PatchRequest, coords: number[]): boolean {
  for (let j = 0; j < coords.length; j += 3) {
    if (
      [0, 1, 2].every((a) => coords[j + a] >= r.start[a] && coords[j + a] < r.start[a] + PATCH[a])
    ) {
      return true;
    }
  }
  return false;
}

Deno.test("patchSampler: the foreground fraction holds over many draws", () => {
  for (const p of [0, 1 / 3, 0.8, 1]) {
    const n = 6000, requests = take(n, { foregroundFraction: p });
    const share = requests.filter((r) => r.centeredOn > 0).length / n;
    // 4.5 standard deviations of a binomial share.
    ok(Math.abs(share - p) <= 4.5 * Math.sqrt((p * (1 - p)) / n) + 1e-9, `p ${p}: got ${share}`);
  }
});

Deno.test("patchSampler: a foreground patch contains a voxel of its class", () => {
  for (const r of take(2000, { foregroundFraction: 1 })) {
    const c = DATASET.cases.find((c) => c.id === r.caseId)!;
    ok(
      contains(r, c.foreground[r.centeredOn]),
      `${r.caseId} [${r.start}] misses class ${r.centeredOn}`,
    );
  }
});

Deno.test("patchSampler: classes balanced among those present in the case", () => {
  const counts: Record<string, number[]> = { both: [0, 0, 0], lung: [0, 0, 0] };
  for (const r of take(6000, { foregroundFraction: 1 })) {
    if (counts[r.caseId]) counts[r.caseId][r.centeredOn]++;
  }
  const [, one, two] = counts.both;
  ok(Math.abs(one / (one + two) - 0.5) < 0.06, `both: ${one} vs ${two}`);
  deepStrictEqual(counts.lung[2], 0, "lung-only case centred on absent class 2");
  ok(counts.lung[1] > 0);
});

Deno.test("patchSampler: cases uniform over the split, other splits excluded", () => {
  const seen: Record<string, number> = {};
  for (const r of take(3000)) seen[r.caseId] = (seen[r.caseId] ?? 0) + 1;
  deepStrictEqual(Object.keys(seen).sort(), ["both", "lung", "tiny"]);
  for (const n of Object.values(seen)) ok(Math.abs(n - 1000) < 120, `case drawn ${n}/3000`);
  ok(take(50, { split: "val" }).every((r) => r.caseId === "held"));
  throws(() => take(1, { split: "test" }), /no labelled "test" cases/);
});

Deno.test("patchSampler: reproducible from the seed", () => {
  deepStrictEqual(take(200), take(200));
  notDeepStrictEqual(take(200), take(200, { seed: 6 }));
});

Deno.test("patchSampler: inside large volumes, covering (padding) small ones", () => {
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (const r of take(4000)) {
    const shape = DATASET.cases.find((c) => c.id === r.caseId)!.shape;
    for (let a = 0; a < 3; a++) {
      if (shape[a] >= PATCH[a]) {
        ok(r.start[a] >= 0 && r.start[a] + PATCH[a] <= shape[a], `${r.caseId} [${r.start}]`);
        if (r.caseId === "both" && r.centeredOn === 0) {
          lo[a] = Math.min(lo[a], r.start[a]);
          hi[a] = Math.max(hi[a], r.start[a]);
        }
      } else {
        // The patch covers the whole axis; the rest is padding.
        ok(r.start[a] <= 0 && r.start[a] + PATCH[a] >= shape[a], `${r.caseId} [${r.start}]`);
      }
    }
  }
  // Uniform placement reaches both ends.
  deepStrictEqual(lo, [0, 0, 0]);
  deepStrictEqual(hi, [40 - 24, 80 - 48, 96 - 48]);
});

Deno.test("patchSampler: rejects bad options", () => {
  throws(() => take(1, { patchSize: [0, 4, 4] }), /patchSize/);
  throws(() => take(1, { foregroundFraction: 1.5 }), /foregroundFraction/);
});

/** A small synthetic case written with small chunks, and its in-memory volumes. */
async function withCase(fn: (dir: string, c: ReturnType<typeof synthCase>) => Promise<void>) {
  await withTempDir(async (dir) => {
    const c = synthCase(2, { shape: [20, 40, 40], lesionCount: 3 });
    await writeCase(join(dir, "a.zarr"), { image: c.image, label: c.label, chunks: 16 });
    await fn(join(dir, "a.zarr"), c);
  });
}

Deno.test("readPatch: normalised image and labels as direct reads, air and 0 as padding", async () => {
  await withCase(async (path, { image, label }) => {
    const reader = await openCase(path);
    const size: Shape3 = [8, 24, 24];
    for (const start of [[4, 8, 10], [-3, 30, -5], [15, -10, 20]] as Shape3[]) {
      const request: PatchRequest = { caseId: "a", start, centeredOn: 0, seed: 1 };
      const patch = await readPatch(reader, request, size, DEFAULT_CT_WINDOW);
      strictEqual(patch.image.length, 8 * 24 * 24);
      for (let z = 0; z < size[0]; z++) {
        for (let y = 0; y < size[1]; y++) {
          for (let x = 0; x < size[2]; x++) {
            const [vz, vy, vx] = [start[0] + z, start[1] + y, start[2] + x];
            const inside = vz >= 0 && vy >= 0 && vx >= 0 && vz < 20 && vy < 40 && vx < 40;
            const src = vx + 40 * (vy + 40 * vz), dst = x + 24 * (y + 24 * z);
            const want = inside ? normalizeValue(image.data[src], DEFAULT_CT_WINDOW) : 0;
            strictEqual(patch.image[dst], want);
            strictEqual(patch.label[dst], inside ? label.data[src] : 0);
          }
        }
      }
    }
  });
});

Deno.test("readPatch: into given arrays and through the int16 table, the same patch", async () => {
  await withCase(async (path, { image, label }) => {
    const reader = await openCase(path);
    const size: Shape3 = [16, 32, 32]; // 16384 voxels: read through the table
    const norms: Normalization[] = [
      DEFAULT_CT_WINDOW,
      { kind: "zscore", clipLo: -900, clipHi: 300, mean: -400, std: 321.5 },
      { kind: "none" },
    ];
    for (const norm of norms) {
      for (const start of [[2, 4, 6], [-5, 20, -9], [10, -12, 15]] as Shape3[]) {
        const request: PatchRequest = { caseId: "a", start, centeredOn: 0, seed: 3 };
        const out = { image: new Float32Array(16 * 32 * 32), label: new Uint8Array(16 * 32 * 32) };
        out.image.fill(NaN);
        const patch = await readPatch(reader, request, size, norm, undefined, out);
        strictEqual(patch, out);
        const pad = normalizeValue(padIntensity(norm), norm);
        for (let z = 0, dst = 0; z < size[0]; z++) {
          for (let y = 0; y < size[1]; y++) {
            for (let x = 0; x < size[2]; x++, dst++) {
              const [vz, vy, vx] = [start[0] + z, start[1] + y, start[2] + x];
              const inside = vz >= 0 && vy >= 0 && vx >= 0 && vz < 20 && vy < 40 && vx < 40;
              const src = vx + 40 * (vy + 40 * vz);
              strictEqual(out.image[dst], inside ? normalizeValue(image.data[src], norm) : pad);
              strictEqual(out.label[dst], inside ? label.data[src] : 0);
            }
          }
        }
      }
    }
    // With every transform (spatial ones give new arrays, copied into `out`).
    const augment = augmentationFromFlags({ preset: "nnunet", elastic: true, rotate90: true });
    for (let seed = 0; seed < 12; seed++) {
      const request: PatchRequest = { caseId: "a", start: [3, 5, 7], centeredOn: 0, seed };
      const plain = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, augment);
      const out = { image: new Float32Array(16 * 32 * 32), label: new Uint8Array(16 * 32 * 32) };
      await readPatch(reader, request, size, DEFAULT_CT_WINDOW, augment, out);
      deepStrictEqual(out, { image: plain.image, label: plain.label });
    }
  });
});

Deno.test("normalizationTable: every int16 value normalised as normalizeInPlace does it", () => {
  for (
    const norm of [
      DEFAULT_CT_WINDOW,
      { kind: "zscore", clipLo: -914, clipHi: 27, mean: -814.0365, std: 152.569 },
      { kind: "none" },
    ] as Normalization[]
  ) {
    const values = Float32Array.from({ length: 65536 }, (_, i) => i - 32768);
    deepStrictEqual(normalizationTable(norm), normalizeInPlace(values, norm));
  }
});

Deno.test("readPatch: augmentation is seeded by the request and off by default", async () => {
  await withCase(async (path) => {
    const reader = await openCase(path);
    const size: Shape3 = [8, 16, 16];
    const request: PatchRequest = { caseId: "a", start: [6, 12, 12], centeredOn: 0, seed: 9 };
    const augment = {
      flipAxes: [0, 1, 2],
      rotate90: true,
      intensityScale: 0.2,
      intensityShift: 0.1,
    };
    const plain = await readPatch(reader, request, size, DEFAULT_CT_WINDOW);
    const a = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, augment);
    const b = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, augment);
    deepStrictEqual(a, b);
    const other = await readPatch(
      reader,
      { ...request, seed: 10 },
      size,
      DEFAULT_CT_WINDOW,
      augment,
    );
    notDeepStrictEqual(a.image, other.image);
    // Flips and rotations permute voxels: the label histogram is unchanged.
    const histogram = (l: Uint8Array) => [0, 1, 2].map((k) => l.filter((v) => v === k).length);
    deepStrictEqual(histogram(a.label), histogram(plain.label));
  });
});

Deno.test("augmentPatch: flips are reversals, intensity changes affine and bounded", () => {
  const size: Shape3 = [3, 4, 5];
  const n = 60, image = Float32Array.from({ length: n }, (_, i) => i);
  const label = Uint8Array.from({ length: n }, (_, i) => i % 3);
  const flipped = image.slice();
  flipAxis(flipped, size, 1);
  for (let z = 0; z < 3; z++) {
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 5; x++) {
        strictEqual(flipped[x + 5 * (y + 4 * z)], image[x + 5 * (3 - y + 4 * z)]);
      }
    }
  }
  for (const axis of [0, 1, 2]) {
    const twice = image.slice();
    flipAxis(twice, size, axis);
    flipAxis(twice, size, axis);
    deepStrictEqual(twice, image);
  }
  const out = augmentPatch(
    { image: image.slice(), label: label.slice() },
    size,
    { intensityScale: 0.1, intensityShift: 0.2 },
    new Random(3),
  );
  deepStrictEqual(out.label, label);
  // out = image·s + t for one s ∈ [0.9, 1.1] and t ∈ [−0.2, 0.2].
  const t = out.image[0], s = out.image[1] - t;
  ok(s >= 0.9 && s <= 1.1 && Math.abs(t) <= 0.2, `scale ${s} shift ${t}`);
  for (let i = 0; i < n; i++) ok(Math.abs(out.image[i] - (i * s + t)) < 1e-4);
});

Deno.test("augmentPatch: axial quarter turns move (y, x) to (x, w−1−y), labels alike", () => {
  const size: Shape3 = [2, 4, 4];
  const image = Float32Array.from({ length: 32 }, (_, i) => i);
  /** Reference: `turns` counterclockwise-in-index quarter turns of every slice. */
  const rotate = (a: Float32Array, turns: number) => {
    let cur = a;
    for (let t = 0; t < turns; t++) {
      const next = new Float32Array(32);
      for (let z = 0; z < 2; z++) {
        for (let y = 0; y < 4; y++) {
          for (let x = 0; x < 4; x++) next[16 * z + 4 * x + (3 - y)] = cur[16 * z + 4 * y + x];
        }
      }
      cur = next;
    }
    return cur;
  };
  const seen = new Set<number>();
  for (let seed = 0; seed < 16; seed++) {
    const turns = new Random(seed).int(0, 4); // the draw augmentPatch makes first
    seen.add(turns);
    const patch = augmentPatch(
      { image: image.slice(), label: Uint8Array.from(image) },
      size,
      { rotate90: true },
      new Random(seed),
    );
    deepStrictEqual(patch.image, rotate(image, turns), `seed ${seed}, ${turns} turns`);
    deepStrictEqual(patch.label, Uint8Array.from(rotate(image, turns)));
  }
  strictEqual(seen.size, 4, "every rotation exercised");
  // A non-square slice only turns by 0° or 180°.
  const rect = augmentPatch(
    { image: Float32Array.from({ length: 24 }, (_, i) => i), label: new Uint8Array(24) },
    [1, 4, 6],
    { rotate90: true },
    new Random(0),
  );
  ok(rect.image[0] === 0 || rect.image[0] === 23);
});
