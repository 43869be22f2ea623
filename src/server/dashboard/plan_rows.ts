/**
 * What the dashboard shows of a planned training job's plan (`job.plan`, see {@link JobPlan}):
 * label/value rows with the reason for each choice, as `voxseg plan` prints them — the network
 * and its levels, patch, batch, target spacing, each channel's normalisation, the schedule and
 * the time budget's choice, the fold, and where the plan came from. Pure (no DOM): app.ts puts
 * the rows into the page as text.
 */

import type { Job, JobPlan } from "../jobs/job.ts";

/** One line of the plan view: a choice, its value, and why it was made (when the plan says). */
export interface PlanRow {
  label: string;
  value: string;
  why?: string;
}

/**
 * The rows shown for a job: none for a prediction job, a job not planned (yet), or one
 * trained without a plan (`"plan": "none"`).
 *
 * @example
 * planRows({ kind: "train", plan: job.plan }) // [{ label: "plan", value: "new: planned for this job" }, …]
 */
export function planRows(job: Pick<Job, "kind" | "plan">): PlanRow[] {
  const p = job.plan;
  if (job.kind !== "train" || !p || p.source === "none") return [];
  const r = p.reasons ?? {};
  const rows: PlanRow[] = [sourceRow(p)];
  if (p.preprocessed) rows.push({ label: "preprocessed", value: p.preprocessed });
  if (p.network) {
    rows.push({ label: "network", value: p.network, why: NETWORKS[p.network] });
  }
  const levels = [
    p.depth !== undefined ? `${p.depth} levels` : "",
    p.baseChannels !== undefined ? `${p.baseChannels} base channels` : "",
  ].filter(Boolean);
  // The pooling and kernels: the planned network's (plain) or today's UNet3D's.
  const topology = p.network === "plain" ? r.topology : r.unet3d ?? r.topology;
  if (levels.length || topology) {
    rows.push({ label: "levels", value: levels.join(", ") || "–", ...why(topology) });
  }
  if (p.patchSize) rows.push({ label: "patch (z, y, x)", value: shape(p.patchSize) });
  if (p.batchSize !== undefined) {
    rows.push({ label: "batch size", value: String(p.batchSize), ...why(r.batch) });
  }
  if (p.targetSpacingMm) {
    rows.push({
      label: "target spacing (z, y, x)",
      value: `${shape(p.targetSpacingMm)} mm`,
      ...why(r.spacing),
    });
  }
  rows.push(...normalisationRows(p));
  rows.push({
    label: "schedule",
    value: scheduleText(p),
    // A budget's reason is its own row's.
    ...(p.budget ? {} : why(r.schedule)),
  });
  if (p.budget) {
    const b = p.budget;
    rows.push({
      label: "time budget",
      value: `${duration(b.budgetSeconds)}: ${b.steps} steps at ${num(b.msPerStep)} ms/step, ` +
        `≈ ${duration(b.estimatedSeconds)} with validation`,
      ...why(b.reason),
    });
  }
  if (p.fold !== undefined) {
    rows.push({ label: "cross-validation fold", value: String(p.fold) });
  }
  for (const note of p.notes ?? []) rows.push({ label: "note", value: note });
  return rows;
}

const NETWORKS: Record<NonNullable<JobPlan["network"]>, string> = {
  unet3d: "UNet3D: isotropic 2× pooling, 3×3×3 kernels",
  plain: "nnU-Net's PlainConvUNet: the planned per-axis strides and kernels",
};

function sourceRow(p: JobPlan): PlanRow {
  const path = p.path ?? "";
  const row = p.source === "request"
    ? { label: "plan", value: path || "the request's plan", why: "named by the request" }
    : p.source === "dataset"
    ? { label: "plan", value: path || "plans.json", why: "the plans.json beside the dataset" }
    : { label: "plan", value: "new", why: "planned for this job" };
  return p.reason ? { ...row, why: `${row.why}; ${p.reason}` } : row;
}

/**
 * The normalisation: one row, or with several input channels one per channel — each channel's
 * name and scheme from `channels`, its reason from `reasons.normalisation` ("channel 0 (CT): …;
 * channel 1 (PET): …", as the planner writes it). A job recorded before `channels` existed
 * shows channel 0's scheme and the names the reasons give.
 */
function normalisationRows(p: JobPlan): PlanRow[] {
  const r = p.reasons ?? {};
  const scheme = p.normalisation ? schemeText(p.normalisation) : undefined;
  const reasons = channelReasons(r.normalisation);
  const count = Math.max(p.channels?.length ?? 0, reasons?.length ?? 0);
  if (count < 2) {
    if (!scheme && !r.normalisation) return [];
    return [{ label: "normalisation", value: scheme ?? "–", ...why(r.normalisation) }];
  }
  return [
    ...(r.channels ? [{ label: "input channels", value: String(count), why: r.channels }] : []),
    ...Array.from({ length: count }, (_, k): PlanRow => {
      const c = p.channels?.[k];
      const name = c?.name ?? reasons?.[k]?.name ?? `channel_${k}`;
      const channelScheme = c ? schemeText(c) : k === 0 ? scheme : undefined;
      return {
        label: `channel ${k} normalisation`,
        value: channelScheme ? `${name}: ${channelScheme}` : name,
        ...why(reasons?.[k]?.reason),
      };
    }),
  ];
}

const CHANNEL_REASON = /^channel (\d+) \((.*?)\): ([\s\S]*)$/;

/** Each channel's name and reason, in order; undefined unless there are several. */
function channelReasons(text: string | undefined): { name: string; reason: string }[] | undefined {
  if (!text) return undefined;
  const parts = text.split(/; (?=channel \d+ \()/).map((part) => CHANNEL_REASON.exec(part));
  if (parts.length < 2) return undefined;
  const out: { name: string; reason: string }[] = [];
  for (const [k, m] of parts.entries()) {
    if (!m || Number(m[1]) !== k) return undefined;
    out.push({ name: m[2], reason: m[3] });
  }
  return out;
}

function schemeText(n: { scheme: string; window?: [number, number] }): string {
  return n.window ? `${n.scheme} ${num(n.window[0])}..${num(n.window[1])} HU` : n.scheme;
}

function scheduleText(p: JobPlan): string {
  const epochs = p.epochs ?? null, iters = p.itersPerEpoch ?? null;
  if (epochs === null && iters === null) return "the trainer's defaults";
  const total = epochs !== null && iters !== null ? ` = ${epochs * iters} steps` : "";
  return `${epochs ?? "default"} epochs × ${iters ?? "default"} steps per epoch${total}`;
}

function why(text: string | undefined): { why?: string } {
  return text ? { why: text } : {};
}

/** z×y×x, numbers as {@link num}. */
function shape(values: number[]): string {
  return values.map(num).join("×");
}

/** A number to 4 significant digits, without trailing zeros: 0.78125 → "0.7813", 2.5 → "2.5". */
export function num(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v);
}

/** Seconds as "45 s", "9 min 31 s", "1 h 30 min". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return `${seconds} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  if (h > 0) return m ? `${h} h ${m} min` : `${h} h`;
  return rest ? `${m} min ${rest} s` : `${m} min`;
}
