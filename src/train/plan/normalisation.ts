/**
 * The intensity half of planning: CT datasets are normalised on the HU scale (`ct-window` or
 * nnU-Net's `ct-zscore`), and cases stored otherwise (e.g. CT windowed to 0..255) get a
 * per-case linear map onto HU, estimated by matching their foreground quantiles to the HU
 * cases'; other modalities are z-scored per case. Pure; reads only the fingerprint.
 *
 * A dataset of several channels is planned channel by channel ({@link planChannels}): a channel
 * named in `channel_names` as nnU-Net does it (CT → the CT scheme, any other name → z-score per
 * case), an unnamed one from its own intensities, exactly as a one-channel dataset.
 */

import { isCtChannel } from "../../data/channels.ts";
import { percentileSorted } from "../../data/dataset.ts";
import {
  channelFingerprint,
  detectIntensityConvention,
  type Fingerprint,
  fingerprintChannels,
  type ForegroundStats,
  inferModality,
  type IntensityConvention,
  type ModalityVerdict,
} from "../../data/fingerprint.ts";
import type { HuMap, NormalisationScheme, PlanChannel, PlanNormalisation } from "./types.ts";

/** What a caller may fix about the normalisation. */
export interface NormalisationOptions {
  /** Default: `ct-window` for CT, `zscore-per-case` otherwise. */
  normalisation?: NormalisationScheme;
  /** HU window for `ct-window`; default: the HU foreground 0.5/99.5 percentiles. */
  window?: [number, number];
}

/** Pooled HU foreground quantiles and moments over cases (quantiles averaged, weighted). */
export interface HuReference {
  p0_5: number;
  p5: number;
  p95: number;
  p99_5: number;
  mean: number;
  std: number;
}

/**
 * Pools per-case foreground statistics: quantiles as the foreground-size-weighted mean of the
 * cases' quantiles (quantile averaging), mean and std exactly from the weighted moments.
 */
export function poolForeground(
  cases: { stats: ForegroundStats; weight: number }[],
): HuReference | null {
  const total = cases.reduce((s, c) => s + c.weight, 0);
  if (cases.length === 0 || !(total > 0)) return null;
  const avg = (f: (s: ForegroundStats) => number) =>
    cases.reduce((s, c) => s + c.weight * f(c.stats), 0) / total;
  const mean = avg((s) => s.mean);
  const second = avg((s) => s.std ** 2 + s.mean ** 2);
  return {
    p0_5: avg((s) => s.p0_5),
    p5: avg((s) => s.p5),
    p95: avg((s) => s.p95),
    p99_5: avg((s) => s.p99_5),
    mean,
    std: Math.sqrt(Math.max(0, second - mean * mean)),
  };
}

/**
 * The linear map `hu = scale · value + offset` that sends a case's foreground p5 and p95 onto
 * the HU reference's; null when the case's quantiles do not span a range.
 *
 * @example
 * huMapByQuantiles({ p5: 20, p95: 120 }, { p5: -900, p95: -400 }) // { scale: 5, offset: -1000 }
 */
export function huMapByQuantiles(
  foreground: Pick<ForegroundStats, "p5" | "p95">,
  hu: Pick<HuReference, "p5" | "p95">,
): { scale: number; offset: number } | null {
  const span = foreground.p95 - foreground.p5, target = hu.p95 - hu.p5;
  if (!(span > 0) || !(target > 0)) return null;
  const scale = target / span;
  return { scale, offset: hu.p5 - scale * foreground.p5 };
}

function foregroundVoxels(c: { voxelsPerClass: number[] }): number {
  return c.voxelsPerClass.slice(1).reduce((s, v) => s + v, 0);
}

/** Per-case maps onto HU for the non-HU cases of a CT dataset. */
function huMapsFor(
  fp: Fingerprint,
  conventions: Record<string, IntensityConvention>,
  hu: HuReference | null,
  window: [number, number],
): { maps: Record<string, HuMap>; notes: string[] } {
  const maps: Record<string, HuMap> = {}, notes: string[] = [];
  const others = fp.cases.filter((c) => conventions[c.id] !== "hu");
  for (const c of others) {
    const fit = c.foreground && hu ? huMapByQuantiles(c.foreground, hu) : null;
    if (fit) maps[c.id] = { ...fit, source: "fit" };
  }
  const fitted = Object.values(maps);
  const med = (f: (m: HuMap) => number) =>
    percentileSorted(fitted.map(f).sort((a, b) => a - b), 50);
  for (const c of others.filter((c) => !maps[c.id])) {
    if (fitted.length) {
      maps[c.id] = { scale: med((m) => m.scale), offset: med((m) => m.offset), source: "median" };
    } else {
      const [lo, hi] = window, top = conventions[c.id] === "unit" ? 1 : 255;
      maps[c.id] = { scale: (hi - lo) / top, offset: lo, source: "window" };
    }
  }
  const bySource = (s: HuMap["source"]) => Object.values(maps).filter((m) => m.source === s).length;
  if (bySource("fit")) {
    notes.push(
      `${bySource("fit")} non-HU cases mapped onto HU by matching their foreground p5/p95 to ` +
        "the HU cases'; preprocessing applies the maps (voxseg plan --preprocess, or train)",
    );
  }
  if (bySource("median")) {
    notes.push(`${bySource("median")} unlabelled non-HU cases use the median map`);
  }
  if (bySource("window")) {
    notes.push(`${bySource("window")} non-HU cases assumed to span the window ${window} linearly`);
  }
  return { maps, notes };
}

/** The normalisation of a CT dataset (HU cases, and maps for the others). */
function ctNormalisation(
  fp: Fingerprint,
  conventions: Record<string, IntensityConvention>,
  scheme: "ct-window" | "ct-zscore",
  opts: NormalisationOptions,
): { normalisation: PlanNormalisation; notes: string[] } {
  const labelled = fp.cases.filter((c) => c.foreground);
  const huCases = labelled.filter((c) => conventions[c.id] === "hu");
  const pooled = poolForeground(
    huCases.map((c) => ({ stats: c.foreground!, weight: foregroundVoxels(c) || 1 })),
  );
  const allHu = huCases.length === labelled.length && fp.intensity !== null;
  const ref = pooled && allHu ? { ...pooled, ...exactStats(fp) } : pooled;
  const source = allHu ? "the dataset's foreground" : `the ${huCases.length} HU cases' foreground`;
  const window: [number, number] = opts.window ??
    (ref ? [Math.round(ref.p0_5), Math.round(ref.p99_5)] : [-1000, 400]);
  const windowWhy = opts.window
    ? "given"
    : ref
    ? `${source} 0.5/99.5 percentiles`
    : "no labelled HU case: the default lung window";
  const { maps, notes } = huMapsFor(fp, conventions, pooled, window);
  const zscore = ref
    ? { clipLo: ref.p0_5, clipHi: ref.p99_5, mean: ref.mean, std: Math.max(ref.std, 1e-8) }
    : null;
  if (scheme === "ct-zscore" && !zscore) {
    throw new Error("ct-zscore needs foreground statistics of labelled HU cases; use ct-window");
  }
  const reason = scheme === "ct-window"
    ? `CT: clip HU to ${window[0]}..${window[1]} (${windowWhy}) and scale to 0..1`
    : `CT (nnU-Net): clip to ${source} 0.5/99.5 percentiles, z-score with its mean/std`;
  return {
    normalisation: {
      scheme,
      window: scheme === "ct-window" ? window : null,
      zscore: scheme === "ct-zscore" ? zscore : null,
      conventions,
      huMaps: maps,
      reason,
    },
    notes,
  };
}

function exactStats(fp: Fingerprint) {
  const s = fp.intensity!;
  return { p0_5: s.p0_5, p99_5: s.p99_5, mean: s.mean, std: s.std };
}

/**
 * The normalisation for a dataset: CT → `ct-window` (or `ct-zscore`), with per-case maps onto
 * HU for cases stored otherwise (e.g. 0..255); not CT → `zscore-per-case`.
 */
export function planNormalisation(
  fp: Fingerprint,
  modality: ModalityVerdict,
  conventions: Record<string, IntensityConvention>,
  opts: NormalisationOptions = {},
): { normalisation: PlanNormalisation; notes: string[] } {
  const scheme = opts.normalisation ?? (modality.isCT ? "ct-window" : "zscore-per-case");
  if (scheme !== "zscore-per-case") {
    const ct = ctNormalisation(fp, conventions, scheme, opts);
    if (modality.isCT) return ct;
    return { ...ct, notes: [...ct.notes, `${scheme} was asked for, but ${modality.reason}`] };
  }
  const why = modality.isCT
    ? "chosen for a CT dataset"
    : "not CT: nnU-Net's scheme for MRI and other images";
  return {
    normalisation: {
      scheme,
      window: null,
      zscore: null,
      conventions,
      huMaps: {},
      reason: `each case z-scored with its own mean and std (${why})`,
    },
    notes: ["zscore-per-case: the loader must z-score each case with its own statistics"],
  };
}

// ---------------------------------------------------------------------------------------------
// Several channels

/**
 * Whether a channel name was chosen by someone (nnU-Net's `channel_names`) rather than given by
 * the converter to an unnamed channel (`channel_0`, `channel_1`, …) or left unknown.
 */
export function isNamedChannel(name: string | undefined): name is string {
  const n = (name ?? "").trim();
  return n !== "" && !/^channel_\d+$/i.test(n) && !/^(unknown|other|none)$/i.test(n);
}

/** The modality of a named channel, as nnU-Net reads `channel_names`: CT or not. */
function namedModality(name: string, conventions: IntensityConvention[]): ModalityVerdict {
  const said = `dataset.json channel_names says "${name.trim()}"`;
  if (isCtChannel(name)) {
    const hu = conventions.filter((c) => c === "hu").length;
    const clash = hu === 0 ? " (although no case has values near −1000 HU)" : "";
    return { isCT: true, modality: "CT", reason: `${said}: nnU-Net's CT scheme${clash}` };
  }
  const clash = conventions.filter((c) => c === "hu").length > conventions.length / 2
    ? " (although most cases look like HU)"
    : "";
  return {
    isCT: false,
    modality: name.trim(),
    reason: `${said}: not CT, so z-scored per case as nnU-Net does${clash}`,
  };
}

/**
 * Each channel's normalisation for a fingerprint of C ≥ 1 channels (one {@link PlanChannel} per
 * channel, channel order). A channel named in `channel_names` is decided by its name (CT → the
 * CT scheme, `ct-window` or, with `normalisation: "ct-zscore"`, nnU-Net's; any other name →
 * `zscore-per-case`); an unnamed one (`channel_N`) from its intensities, as one channel is
 * ({@link inferModality}, {@link planNormalisation}). `normalisation: "zscore-per-case"` applies
 * to every channel, a CT scheme and `window` to the CT channels. A channel named CT that holds
 * no HU case is windowed on its own scale (its foreground percentiles, nnU-Net's CT scheme),
 * with a note. Notes are prefixed with their channel.
 *
 * @example
 * planChannels(fp).channels.map((c) => c.normalisation.scheme) // CT + T2: ["ct-window", "zscore-per-case"]
 */
export function planChannels(
  fp: Fingerprint,
  opts: NormalisationOptions = {},
): { channels: PlanChannel[]; notes: string[] } {
  const n = fingerprintChannels(fp);
  const notes: string[] = [];
  const channels = Array.from({ length: n }, (_, c): PlanChannel => {
    const view = channelFingerprint(fp, c);
    const name = n > 1 ? fp.channels![c] : fp.modality;
    const conventions: Record<string, IntensityConvention> = Object.fromEntries(
      view.cases.map((k) => [k.id, detectIntensityConvention(k.image).convention]),
    );
    const named = n > 1 && isNamedChannel(name);
    const modality = named
      ? namedModality(name, Object.values(conventions))
      : inferModality(n > 1 ? undefined : fp.modality, Object.values(conventions));
    const scheme: NormalisationScheme = opts.normalisation === "zscore-per-case" || !modality.isCT
      ? "zscore-per-case"
      : opts.normalisation ?? "ct-window";
    const own = n > 1 ? { normalisation: scheme, ...(modality.isCT ? pick(opts) : {}) } : opts;
    const noHu = modality.isCT && !Object.values(conventions).includes("hu");
    const r = noHu && named
      ? planNormalisation(view, modality, allHu(conventions), own)
      : planNormalisation(view, modality, conventions, own);
    const normalisation = { ...r.normalisation, conventions };
    const prefix = n > 1 ? `channel ${c} (${name}): ` : "";
    for (const note of r.notes) {
      const line = note.startsWith("zscore-per-case:") ? note : prefix + note;
      if (!notes.includes(line)) notes.push(line);
    }
    if (noHu && named) {
      notes.push(
        `${prefix}named CT but no case holds Hounsfield units; windowed on its own scale ` +
          "(foreground percentiles, nnU-Net's CT scheme)",
      );
    }
    return {
      name,
      decidedBy: named ? "channel_names" : "intensities",
      modality,
      normalisation,
    };
  });
  return { channels, notes };
}

function pick(o: NormalisationOptions): NormalisationOptions {
  return o.window ? { window: o.window } : {};
}

function allHu(conventions: Record<string, IntensityConvention>) {
  return Object.fromEntries(Object.keys(conventions).map((id) => [id, "hu" as const]));
}
