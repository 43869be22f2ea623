/**
 * `voxseg eval`: predicts every labelled case of a dataset split and scores it against its
 * reference labels — Dice, HD95, precision, recall, volume difference per class — printing a
 * table and writing JSON and CSV reports.
 */

import { dirname, join } from "node:path";
import { writeFileAtomic } from "../base/atomic.ts";
import { readDataset, type Split, SPLITS } from "../data/dataset.ts";
import {
  type CaseEvaluation,
  evaluateDataset,
  type MeanMetrics,
  meanMetrics,
} from "../infer/evaluate.ts";
import type { ClassMetrics } from "../infer/metrics.ts";
import { loadModel } from "../infer/predict.ts";
import { numberFlag, parseNamedFlags } from "./args.ts";
import { PREDICT_FLAGS, predictOptionsFromFlags } from "./infer.ts";
import { UsageError } from "./usage_error.ts";
import { Progress } from "./progress.ts";

const HELP = `voxseg eval --model M.safetensors --data DIR|URL [--split test] [--out PREFIX] [flags]

Predicts each labelled case of the split (as \`voxseg infer\` does) and compares it with the
reference labels, per foreground class: Dice, HD95 (mm; MONAI's 95th-percentile symmetric
surface distance using the voxel spacing), precision, recall, predicted and reference volume
(mL) and their difference (mL and relative). Prints a table and writes PREFIX.json and
PREFIX.csv (default: eval_<split> beside the model).

Empty masks: Dice is NaN when a class is absent from both prediction and reference (nnU-Net);
HD95 is inf when exactly one of them is empty and NaN when both are (MONAI); precision is NaN
for an empty prediction, recall and relative volume difference for an empty reference. Means
skip NaN; HD95 means skip inf and report how many cases had it. JSON writes NaN as null and
inf as "inf".

flags:
  --split S       train, val or test (default test)
  --max-cases N   only the first N cases of the split
  --json          machine-readable progress lines; the last one holds the means
  ${
  [
    "--overlap F, --tta, --tta-axes A,B, --precision P, --batch-size N,",
    "  --memory-budget MIB, --spacing-tolerance F   as for voxseg infer",
  ].join("\n  ")
}`;

const FLAGS = {
  model: { type: "string" },
  data: { type: "string" },
  split: { type: "string" },
  out: { type: "string" },
  "max-cases": { type: "string" },
  json: { type: "boolean" },
  ...PREDICT_FLAGS,
} as const;

/** Metric columns: key, header, digits. */
const COLUMNS: [keyof ClassMetrics, string, number][] = [
  ["dice", "dice", 4],
  ["hd95Mm", "hd95_mm", 2],
  ["precision", "precision", 4],
  ["recall", "recall", 4],
  ["predMl", "pred_ml", 2],
  ["refMl", "ref_ml", 2],
  ["volumeDiffMl", "vol_diff_ml", 2],
  ["volumeDiffRel", "vol_diff_rel", 4],
];

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["model", "data"]);
  const split = String(v.split ?? "test") as Split;
  if (!SPLITS.includes(split)) {
    throw new UsageError(`--split must be one of ${SPLITS.join(", ")}, got "${v.split}"`);
  }
  const maxCases = numberFlag(v["max-cases"], "max-cases", Infinity, { min: 1, integer: true });
  const options = predictOptionsFromFlags(v);
  const json = Boolean(v.json);
  const prefix = String(v.out ?? join(dirname(String(v.model)), `eval_${split}`))
    .replace(/\.(json|csv)$/i, "");
  const dataset = await readDataset(String(v.data));
  const loaded = await loadModel(String(v.model));
  const progress = new Progress({ json });
  const results: CaseEvaluation[] = [];
  try {
    let current = "";
    for await (
      const r of evaluateDataset(loaded, dataset, {
        ...options,
        split,
        maxCases,
        onCase: (id, i, n) => {
          current = `case ${i + 1}/${n} ${id}`;
          progress.log(`evaluating ${current}`);
        },
        onProgress: (done, total) => progress.update({ phase: current, step: done, total }),
      })
    ) {
      results.push(r);
      const parts = Object.entries(r.metrics).map(([name, m]) =>
        `${name} dice ${fmt(m.dice, 3)} hd95 ${fmt(m.hd95Mm, 1)} mm`
      );
      progress.log(`${r.id}: ${parts.join(", ")}`);
    }
  } finally {
    loaded.dispose();
  }
  const mean = meanMetrics(results);
  const report = {
    model: String(v.model),
    dataset: dataset.name,
    data: String(v.data),
    split,
    settings: { ...options, tta: options.tta },
    classes: Object.keys(mean),
    mean,
    cases: results,
  };
  await writeFileAtomic(`${prefix}.json`, JSON.stringify(report, jsonNumbers, 2) + "\n");
  await writeFileAtomic(`${prefix}.csv`, csvReport(results, mean));
  if (json) {
    progress.done({ mean, report: `${prefix}.json`, csv: `${prefix}.csv` });
  } else {
    progress.done({ cases: results.length });
    console.log(table(results, mean));
    console.log(`reports: ${prefix}.json, ${prefix}.csv`);
  }
  return 0;
}

/** NaN → null, ±Infinity → "inf" / "-inf" (JSON has no such numbers). */
function jsonNumbers(_key: string, value: unknown): unknown {
  if (typeof value !== "number" || Number.isFinite(value)) return value;
  return Number.isNaN(value) ? null : value > 0 ? "inf" : "-inf";
}

function fmt(x: number, digits: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return x.toFixed(digits);
}

/** One row per case and class, then one per class for the mean. */
export function csvReport(results: readonly CaseEvaluation[], mean: MeanMetrics): string {
  const header = ["case", "class", ...COLUMNS.map(([, h]) => h)].join(",");
  const row = (id: string, name: string, m: ClassMetrics) =>
    [id, name, ...COLUMNS.map(([k, , d]) => fmt(m[k], d + 2))].join(",");
  const lines = results.flatMap((r) => Object.entries(r.metrics).map(([n, m]) => row(r.id, n, m)));
  for (const [name, m] of Object.entries(mean)) lines.push(row("mean", name, m));
  return [header, ...lines].join("\n") + "\n";
}

/** The terminal table: case × class rows, then the means with their case counts. */
export function table(results: readonly CaseEvaluation[], mean: MeanMetrics): string {
  const idWidth = Math.max(4, ...results.map((r) => r.id.length));
  const names = Object.keys(mean);
  const classWidth = Math.max(5, ...names.map((n) => n.length));
  const head = [
    "case".padEnd(idWidth),
    "class".padEnd(classWidth),
    ...COLUMNS.map(([, h]) => h.padStart(12)),
  ];
  const row = (id: string, name: string, m: ClassMetrics) =>
    [
      id.padEnd(idWidth),
      name.padEnd(classWidth),
      ...COLUMNS.map(([k, , d]) => fmt(m[k], d).padStart(12)),
    ]
      .join("  ");
  const lines = [head.join("  ")];
  for (const r of results) {
    for (const [n, m] of Object.entries(r.metrics)) lines.push(row(r.id, n, m));
  }
  lines.push("-".repeat(lines[0].length));
  for (const [n, m] of Object.entries(mean)) {
    const note = m.hd95Infinite ? `  (${m.hd95Infinite} inf HD95 left out)` : "";
    lines.push(row("mean", n, m) + note);
  }
  return lines.join("\n");
}
