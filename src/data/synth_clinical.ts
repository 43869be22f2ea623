/**
 * The "clinical" synthetic cohort: chest CTs as heterogeneous as a public COVID-19 CT
 * segmentation set. Each case has its own voxel spacing (in-plane 0.6–0.9 mm, 1–5 mm between
 * slices), field of view (the body fills more or less of the grid, some scans stop short of
 * the lung apex or base), storage orientation (flipped or permuted axes, expressed through the
 * affine so the world geometry stays right) and intensity convention (Hounsfield units, or HU
 * windowed to 0..255 as some public sets were released).
 *
 * A case is made in three steps:
 *  1. the patient: the {@link synthCase} phantom rendered once on a fixed-size box in
 *     millimetres (a patient-specific width and length), so its anatomy has the same physical
 *     size whatever grid it is later sampled onto;
 *  2. sampling: the box is resampled axis by axis onto the case's grid (box averaging where the
 *     case is coarser, which gives thick slices their partial volume; linear interpolation
 *     where it is finer), then scanner noise is added at the case's resolution;
 *  3. storage: the canonical array (z superior, y posterior, x to the patient's left, the
 *     "LPS" axis codes of a DICOM-converted NIfTI) is flipped and permuted into the case's
 *     orientation, and its affine follows.
 *
 * Axis codes name, for the stored axes i, j, k (x, y, z of the array, W, H, D), the world
 * direction each index increases towards (nibabel's `aff2axcodes`): "LPS" = i to the left,
 * j posterior, k superior. Every random choice comes from the case seed.
 */

import { Random } from "../base/random.ts";
import { synthCase, type SynthLesion } from "./synth.ts";
import type { Shape3, Volume } from "./volume.ts";

/** Stored-axis codes of the clinical cohort; "LPS" is the canonical, DICOM-converted layout. */
export const CLINICAL_ORIENTATIONS = ["LPS", "RAS", "LPI", "PLS", "LSA"] as const;
export type ClinicalOrientation = (typeof CLINICAL_ORIENTATIONS)[number];

/** How intensities are stored: Hounsfield units, or HU windowed and scaled to 0..255. */
export type IntensityConvention = "hu" | "byte";

/** HU windows [low, high] used for "byte" cases (the first is the public set's). */
export const CLINICAL_WINDOWS: readonly [number, number][] = [
  [-1250, 250],
  [-1350, 150],
  [-1000, 400],
];

/** In-plane and between-slice spacing ranges (mm) at spacing scale 1. */
export const CLINICAL_IN_PLANE_MM: readonly [number, number] = [0.6, 0.9];
export const CLINICAL_SLICE_MM: readonly [number, number] = [1, 5];

/** Clamp of stored HU, as a 12-bit CT reconstruction writes them. */
const HU_MIN = -1024, HU_MAX = 3071;

export interface ClinicalOptions {
  /**
   * Multiplies both spacing ranges (and the patient's render resolution): 1 (default) gives
   * clinical spacings; 2–4 gives the same patients on far fewer voxels.
   */
  spacingScale?: number;
  /** Overrides of the drawn choices (spacings in mm, before any scaling). */
  inPlaneMm?: number;
  sliceMm?: number;
  orientation?: ClinicalOrientation;
  convention?: IntensityConvention;
  window?: [number, number];
  /** In-plane field of view in mm (square). */
  fovMm?: number;
  /** Length (mm) cut off the top and the bottom of the patient box. */
  cutTopMm?: number;
  cutBottomMm?: number;
  /** Resolution [z, y, x] mm of the patient render; default from the spacing scale. */
  renderMm?: Shape3;
}

/** Everything drawn for one case: the ground truth a dataset records per case. */
export interface ClinicalRecord {
  seed: number;
  /** Stored shape D, H, W and spacing z, y, x (mm), as the case's volume has them. */
  shape: Shape3;
  spacingMm: Shape3;
  /** In-plane (L–R and A–P) and between-slice (S–I) spacing in mm, whatever the orientation. */
  inPlaneMm: number;
  sliceMm: number;
  spacingScale: number;
  orientation: ClinicalOrientation;
  convention: IntensityConvention;
  /** HU window mapped to 0..255 for "byte" cases, else null. */
  window: [number, number] | null;
  /** Square in-plane field of view, and the patient box's width it is compared with (mm). */
  fovMm: number;
  patientWidthMm: number;
  /** Patient-box length (mm) left out above and below the scan (0 when the scan is whole). */
  cutTopMm: number;
  cutBottomMm: number;
  /** Standard deviation of the scanner noise added at the case's resolution (HU). */
  noiseHu: number;
}

/** A patient's size and place in the world, drawn from the case seed alone. */
interface PatientFrame {
  phantomSeed: number;
  /** Box width (x and y, mm) and length (z, mm). */
  widthMm: number;
  lengthMm: number;
  /** World (RAS mm) position of the box centre. */
  center: [number, number, number];
}

/** The case seed's streams: the patient, the grid choices, the scanner noise. */
function streams(seed: number) {
  const rng = new Random(seed);
  return { patient: rng.fork(), grid: rng.fork(), noise: rng.fork() };
}

function round4(n: number): number {
  return Math.round(n * 1e4) / 1e4;
}

function patientFrame(seed: number): PatientFrame {
  const rng = streams(seed).patient;
  return {
    phantomSeed: rng.int(0, 2 ** 31),
    widthMm: rng.uniform(340, 400),
    lengthMm: rng.uniform(280, 340),
    center: [
      round4(rng.uniform(-15, 15)),
      round4(rng.uniform(0, 40)),
      round4(-rng.uniform(150, 350)),
    ],
  };
}

/**
 * Draws the grid, orientation and intensity convention of case `seed` (cheap: nothing is
 * rendered). Options override single choices; the others are drawn as without them.
 *
 * @example
 * const r = planClinicalCase(3); // r.spacingMm, r.orientation, r.convention, …
 */
export function planClinicalCase(seed: number, options: ClinicalOptions = {}): ClinicalRecord {
  const scale = options.spacingScale ?? 1;
  if (!(scale > 0 && scale <= 20)) {
    throw new RangeError(`spacingScale must be in (0, 20], got ${scale}`);
  }
  const frame = patientFrame(seed);
  const rng = streams(seed).grid;
  const drawn = {
    inPlane: rng.uniform(...CLINICAL_IN_PLANE_MM),
    slice: rng.uniform(...CLINICAL_SLICE_MM),
    fov: frame.widthMm * rng.uniform(0.85, 1.25),
    cut: rng.next(),
    cutMm: frame.lengthMm * rng.uniform(0.08, 0.2),
    orientation: [rng.next(), rng.int(1, CLINICAL_ORIENTATIONS.length)],
    convention: (rng.next() < 0.5 ? "hu" : "byte") as IntensityConvention,
    window: [rng.next(), rng.int(1, CLINICAL_WINDOWS.length)],
    noise: rng.uniform(12, 22),
  };
  // Half the scans in the canonical layout; most windowed ones with the public set's window.
  const drawnOrientation =
    CLINICAL_ORIENTATIONS[drawn.orientation[0] < 0.5 ? 0 : drawn.orientation[1]];
  const drawnWindow = CLINICAL_WINDOWS[drawn.window[0] < 0.6 ? 0 : drawn.window[1]];
  const inPlaneMm = round4((options.inPlaneMm ?? drawn.inPlane) * scale);
  const sliceMm = round4((options.sliceMm ?? drawn.slice) * scale);
  const fovMm = round4(options.fovMm ?? drawn.fov);
  const cutTopMm = round4(options.cutTopMm ?? (drawn.cut < 0.2 ? drawn.cutMm : 0));
  const cutBottomMm = round4(
    options.cutBottomMm ?? (drawn.cut >= 0.2 && drawn.cut < 0.4 ? drawn.cutMm : 0),
  );
  const orientation = options.orientation ?? drawnOrientation;
  const convention = options.convention ?? drawn.convention;
  const canonical = canonicalShape(frame, { inPlaneMm, sliceMm, fovMm, cutTopMm, cutBottomMm });
  const stored = storedGeometry(canonical, [sliceMm, inPlaneMm, inPlaneMm], orientation);
  return {
    seed,
    shape: stored.shape,
    spacingMm: stored.spacingMm,
    inPlaneMm,
    sliceMm,
    spacingScale: scale,
    orientation,
    convention,
    window: convention === "byte" ? [...(options.window ?? drawnWindow)] : null,
    fovMm,
    patientWidthMm: round4(frame.widthMm),
    cutTopMm,
    cutBottomMm,
    // Thicker slices average more photons: noise falls with the square root of the thickness.
    noiseHu: round4(drawn.noise / Math.sqrt(sliceMm / scale)),
  };
}

/** Canonical (LPS) grid [D, H, W] of a case: the square field of view, the uncut length. */
function canonicalShape(
  frame: PatientFrame,
  g: { inPlaneMm: number; sliceMm: number; fovMm: number; cutTopMm: number; cutBottomMm: number },
): Shape3 {
  const n = Math.max(4, Math.round(g.fovMm / g.inPlaneMm));
  const length = frame.lengthMm - g.cutTopMm - g.cutBottomMm;
  if (!(length > 4 * g.sliceMm)) {
    throw new RangeError(
      `the cuts leave ${length.toFixed(1)} mm of a ${frame.lengthMm.toFixed(1)} mm patient: ` +
        "cut less, or use thinner slices",
    );
  }
  return [Math.round(length / g.sliceMm), n, n];
}

/** Per stored axis (i, j, k): the canonical axis (0 x, 1 y, 2 z) it runs along, and a flip. */
function axisMapping(code: ClinicalOrientation): { axis: number[]; flip: boolean[] } {
  const letters: Record<string, [number, boolean]> = {
    L: [0, false],
    R: [0, true],
    P: [1, false],
    A: [1, true],
    S: [2, false],
    I: [2, true],
  };
  const pairs = [...code].map((c) => letters[c]);
  return { axis: pairs.map((p) => p[0]), flip: pairs.map((p) => p[1]) };
}

/** Stored shape and spacing (z, y, x order) of a canonical grid in orientation `code`. */
function storedGeometry(canonical: Shape3, spacing: Shape3, code: ClinicalOrientation) {
  const { axis } = axisMapping(code);
  // Canonical sizes and spacings in x, y, z order, picked per stored axis i, j, k.
  const n = [canonical[2], canonical[1], canonical[0]];
  const s = [spacing[2], spacing[1], spacing[0]];
  return {
    shape: [n[axis[2]], n[axis[1]], n[axis[0]]] as Shape3,
    spacingMm: [s[axis[2]], s[axis[1]], s[axis[0]]] as Shape3,
  };
}

/** A patient rendered on its box: canonical axes (z superior, y posterior, x to the left). */
export interface ClinicalPatient {
  /** HU, [D, H, W] of the box, x fastest. */
  hu: Float32Array;
  /** 0 background, 1 lung, 2 infection. */
  label: Uint8Array;
  shape: Shape3;
  /** Render spacing z, y, x (mm). */
  spacingMm: Shape3;
  /** World (RAS mm) position of the box centre. */
  center: [number, number, number];
  lesions: SynthLesion[];
}

/** Default patient render resolution [z, y, x] mm for a spacing scale. */
export function defaultRenderMm(spacingScale = 1): Shape3 {
  const inPlane = round4(Math.max(1.2, 0.7 * spacingScale));
  return [round4(Math.max(1.5, CLINICAL_SLICE_MM[0] * spacingScale)), inPlane, inPlane];
}

/**
 * Renders the patient of case `seed` on its box at `renderMm` [z, y, x] resolution. The
 * anatomy, lesion count and kinds depend on the seed alone; finer renders show more vessels.
 */
export function renderPatient(seed: number, renderMm: Shape3): ClinicalPatient {
  if (renderMm.length !== 3 || renderMm.some((s) => !(s >= 0.3 && s <= 20))) {
    throw new RangeError(`renderMm must be 3 spacings in [0.3, 20] mm, got [${renderMm}]`);
  }
  const f = patientFrame(seed);
  const shape: Shape3 = [
    Math.round(f.lengthMm / renderMm[0]),
    Math.round(f.widthMm / renderMm[1]),
    Math.round(f.widthMm / renderMm[2]),
  ];
  const c = synthCase(f.phantomSeed, {
    shape,
    spacingMm: [...renderMm],
    cohort: "positive",
    noiseHu: 3,
  });
  return {
    hu: Float32Array.from(c.image.data),
    label: c.label.data as Uint8Array,
    shape,
    spacingMm: [...renderMm],
    center: [...f.center],
    lesions: c.lesions,
  };
}

/** Output voxels as weighted sums of input voxels along one axis (compressed rows). */
interface AxisResampling {
  start: Int32Array;
  index: Int32Array;
  weight: Float32Array;
  /** Share of each output voxel lying outside the input (filled with the fill value). */
  outside: Float32Array;
}

/**
 * Weights of an axis resampling: output voxel k is centred at `first + k·sOut` mm (input voxel
 * i covers [i·sIn, (i+1)·sIn)) and averages the input over a window max(sIn, sOut) wide —
 * a box average when coarser, linear interpolation when finer, a copy when aligned.
 */
function axisResampling(nIn: number, sIn: number, nOut: number, sOut: number, first: number) {
  const w = Math.max(sIn, sOut);
  const start = new Int32Array(nOut + 1), outside = new Float32Array(nOut);
  const index: number[] = [], weight: number[] = [];
  for (let k = 0; k < nOut; k++) {
    const a = first + k * sOut - w / 2, b = a + w;
    const i0 = Math.max(0, Math.floor(a / sIn)), i1 = Math.min(nIn - 1, Math.ceil(b / sIn) - 1);
    let inside = 0;
    for (let i = i0; i <= i1; i++) {
      const overlap = Math.min(b, (i + 1) * sIn) - Math.max(a, i * sIn);
      if (overlap <= 1e-9 * w) continue;
      index.push(i);
      weight.push(overlap / w);
      inside += overlap;
    }
    start[k + 1] = index.length;
    outside[k] = Math.max(0, 1 - inside / w);
  }
  return {
    start,
    index: Int32Array.from(index),
    weight: Float32Array.from(weight),
    outside,
  } as AxisResampling;
}

/** Applies an {@link AxisResampling} along `axis` (0 z, 1 y, 2 x) of a [D, H, W] volume. */
function resampleAxis(
  src: Float32Array,
  shape: Shape3,
  axis: 0 | 1 | 2,
  r: AxisResampling,
  fill: number,
): { data: Float32Array; shape: Shape3 } {
  const nIn = shape[axis], nOut = r.outside.length;
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * nOut * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < nOut; k++) {
      const dst = (o * nOut + k) * inner;
      if (inner === 1) {
        // Along x: one scalar sum per output voxel.
        let sum = fill * r.outside[k];
        const row = o * nIn;
        for (let e = r.start[k]; e < r.start[k + 1]; e++) {
          sum += r.weight[e] * src[row + r.index[e]];
        }
        out[dst] = sum;
        continue;
      }
      out.fill(fill * r.outside[k], dst, dst + inner);
      for (let e = r.start[k]; e < r.start[k + 1]; e++) {
        const from = (o * nIn + r.index[e]) * inner, w = r.weight[e];
        for (let q = 0; q < inner; q++) out[dst + q] += w * src[from + q];
      }
    }
  }
  const outShape: Shape3 = [...shape];
  outShape[axis] = nOut;
  return { data: out, shape: outShape };
}

/** Resamples a patient-box volume onto a case's canonical grid (three axis passes). */
function resampleToCase(
  data: Float32Array,
  patient: ClinicalPatient,
  maps: [AxisResampling, AxisResampling, AxisResampling],
  fill: number,
): Float32Array {
  let v = { data, shape: patient.shape };
  // The most shrinking axis first: later passes then touch fewer voxels.
  const order = ([0, 1, 2] as const).slice().sort((a, b) =>
    maps[a].outside.length / patient.shape[a] - maps[b].outside.length / patient.shape[b]
  );
  for (const axis of order) v = resampleAxis(v.data, v.shape, axis, maps[axis], fill);
  return v.data;
}

/**
 * The axis resamplings from the patient box onto the case's canonical grid, and that grid's
 * LPS affine: the field of view centred on the box in-plane, the cuts taken off in z.
 */
function caseGrid(patient: ClinicalPatient, r: ClinicalRecord, canonical: Shape3) {
  const [D, H, W] = canonical;
  const [rz, ry, rx] = patient.spacingMm;
  const [nz, ny, nx] = patient.shape;
  const s = r.inPlaneMm, t = r.sliceMm;
  // First voxel centres in box millimetres (from the box corner).
  const x0 = (nx * rx) / 2 - ((W - 1) * s) / 2, y0 = (ny * ry) / 2 - ((H - 1) * s) / 2;
  const z0 = (nz * rz) / 2 + (r.cutBottomMm - r.cutTopMm) / 2 - ((D - 1) * t) / 2;
  const maps: [AxisResampling, AxisResampling, AxisResampling] = [
    axisResampling(nz, rz, D, t, z0),
    axisResampling(ny, ry, H, s, y0),
    axisResampling(nx, rx, W, s, x0),
  ];
  // World of box millimetres p: R = cR − (p_x − lx/2), A = cA − (p_y − ly/2), S = cS + (p_z − lz/2).
  const [cR, cA, cS] = patient.center;
  const affine = [
    -s,
    0,
    0,
    round4(cR - (x0 - (nx * rx) / 2)),
    0,
    -s,
    0,
    round4(cA - (y0 - (ny * ry) / 2)),
    0,
    0,
    t,
    round4(cS + (z0 - (nz * rz) / 2)),
    0,
    0,
    0,
    1,
  ];
  return { maps, affine };
}

/** Adds scanner noise, clamps to the 12-bit HU range and stores as the case's convention. */
function storeIntensities(hu: Float32Array, r: ClinicalRecord, rng: Random): Int16Array {
  const table = new Float32Array(1 << 16);
  for (let k = 0; k < table.length; k++) table[k] = rng.normal(0, r.noiseHu);
  const out = new Int16Array(hu.length);
  const [lo, hi] = r.window ?? [0, 1];
  const byte = r.convention === "byte", k255 = 255 / (hi - lo);
  for (let i = 0; i < hu.length; i++) {
    let v = Math.round(hu[i] + table[(rng.next() * 65536) | 0]);
    v = v < HU_MIN ? HU_MIN : v > HU_MAX ? HU_MAX : v;
    if (byte) {
      // The public windowed sets stored round(clip((HU − low) / (high − low)) · 255).
      const b = Math.round((v - lo) * k255);
      v = b < 0 ? 0 : b > 255 ? 255 : b;
    }
    out[i] = v;
  }
  return out;
}

/**
 * Flips and permutes a canonical (LPS) [D, H, W] array into orientation `code`; with the
 * affine likewise, every voxel keeps its world position.
 */
function reorient<T extends Int16Array | Uint8Array>(
  data: T,
  canonical: Shape3,
  code: ClinicalOrientation,
  make: (n: number) => T,
): T {
  const { axis, flip } = axisMapping(code);
  const n = [canonical[2], canonical[1], canonical[0]];
  const stride = [1, n[0], n[0] * n[1]];
  let base = 0;
  const step = [0, 1, 2].map((a) => {
    const c = axis[a];
    if (flip[a]) base += (n[c] - 1) * stride[c];
    return flip[a] ? -stride[c] : stride[c];
  });
  const [ni, nj, nk] = [n[axis[0]], n[axis[1]], n[axis[2]]];
  const out = make(data.length);
  let o = 0;
  for (let k = 0; k < nk; k++) {
    for (let j = 0; j < nj; j++) {
      let src = base + k * step[2] + j * step[1];
      for (let i = 0; i < ni; i++, src += step[0]) out[o++] = data[src];
    }
  }
  return out;
}

/** The affine of the reoriented array: columns flipped and permuted, origin moved. */
function reorientAffine(a: number[], canonical: Shape3, code: ClinicalOrientation): number[] {
  const { axis, flip } = axisMapping(code);
  const n = [canonical[2], canonical[1], canonical[0]];
  const out = [0, 0, 0, a[3], 0, 0, 0, a[7], 0, 0, 0, a[11], 0, 0, 0, 1];
  for (let col = 0; col < 3; col++) {
    const c = axis[col], sign = flip[col] ? -1 : 1;
    for (let row = 0; row < 3; row++) {
      out[4 * row + col] = sign * a[4 * row + c];
      if (flip[col]) out[4 * row + 3] += (n[c] - 1) * a[4 * row + c];
    }
  }
  return out.map((v) => (v === 0 ? 0 : round4(v)));
}

/** One clinical case: stored image and label on the same grid, and what was drawn. */
export interface SynthClinicalCase {
  /** int16 array: HU, or 0..255 for a "byte" case (see `record.convention`). */
  image: Volume;
  /** uint8: 0 background, 1 lung (vessels included), 2 infection. */
  label: Volume;
  record: ClinicalRecord;
  lesions: SynthLesion[];
}

/**
 * Samples case `record` from an already rendered `patient` (the same seed's): a test can
 * render a patient once and view it through many grids.
 */
export function sampleClinicalCase(
  patient: ClinicalPatient,
  record: ClinicalRecord,
): SynthClinicalCase {
  const canonical = canonicalShape(patientFrame(record.seed), record);
  const { maps, affine } = caseGrid(patient, record, canonical);
  const hu = resampleToCase(patient.hu, patient, maps, -1000);
  const anyLabel = new Float32Array(patient.label.length);
  const infection = new Float32Array(patient.label.length);
  for (let i = 0; i < anyLabel.length; i++) {
    anyLabel[i] = patient.label[i] > 0 ? 1 : 0;
    infection[i] = patient.label[i] === 2 ? 1 : 0;
  }
  const lungShare = resampleToCase(anyLabel, patient, maps, 0);
  const infectionShare = resampleToCase(infection, patient, maps, 0);
  const labels = new Uint8Array(hu.length);
  for (let i = 0; i < labels.length; i++) {
    labels[i] = infectionShare[i] >= 0.5 ? 2 : lungShare[i] >= 0.5 ? 1 : 0;
  }
  const image = storeIntensities(hu, record, streams(record.seed).noise);
  const o = record.orientation;
  const geometry = {
    shape: [...record.shape] as Shape3,
    spacingMm: [...record.spacingMm] as Shape3,
    affine: reorientAffine(affine, canonical, o),
  };
  return {
    image: { ...geometry, data: reorient(image, canonical, o, (n) => new Int16Array(n)) },
    label: {
      ...geometry,
      affine: [...geometry.affine],
      data: reorient(labels, canonical, o, (n) => new Uint8Array(n)),
    },
    record,
    lesions: patient.lesions,
  };
}

/**
 * Generates clinical case `seed`: plans it, renders its patient, samples and stores it.
 *
 * @example
 * const { image, label, record } = synthClinicalCase(5, { spacingScale: 3 });
 */
export function synthClinicalCase(seed: number, options: ClinicalOptions = {}): SynthClinicalCase {
  const record = planClinicalCase(seed, options);
  const renderMm = options.renderMm ?? defaultRenderMm(record.spacingScale);
  return sampleClinicalCase(renderPatient(seed, renderMm), record);
}

/**
 * Balanced per-case choices for a dataset of `n` clinical cases: half "byte" and half "hu",
 * half "LPS" and the rest spread over the other orientations, shuffled by `seed`.
 */
export function clinicalAssignments(
  n: number,
  seed: number,
): { convention: IntensityConvention; orientation: ClinicalOrientation }[] {
  const rng = new Random(seed ^ 0x0c1a1c);
  const shuffle = <T>(a: T[]): T[] => {
    for (let i = a.length - 1; i > 0; i--) {
      const j = rng.int(0, i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  };
  const others = CLINICAL_ORIENTATIONS.slice(1);
  const conventions = shuffle(
    Array.from({ length: n }, (_, i): IntensityConvention => (i % 2 ? "byte" : "hu")),
  );
  const orientations = shuffle(
    Array.from({ length: n }, (_, i) => (i % 2 ? others[(i >> 1) % others.length] : "LPS")),
  );
  return conventions.map((convention, i) => ({ convention, orientation: orientations[i] }));
}
