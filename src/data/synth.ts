/**
 * Synthetic chest-CT phantoms in Hounsfield units, with lung and COVID-19-like infection labels.
 *
 * Anatomy is drawn in coordinates normalised to the field of view (u, v ∈ [-1, 1] across x and y,
 * t ∈ [0, 1] from the feet to the head), so any shape gives a whole chest; sizes of small
 * structures (ribs, vessels, lesions) are in millimetres scaled by the field of view. Voxel
 * order is the project's: z (inferior → superior), y (anterior → posterior), x (patient right →
 * left), flat index x + W·(y + H·z); the affine is the NIfTI RAS one a DICOM converter writes
 * for such a scan (negative x and y steps).
 *
 * Every random choice comes from one {@link Random} stream seeded by the case seed, so a seed
 * always gives the same bytes. The hot loops index typed arrays directly; per-slice and per-row
 * terms are hoisted out of the voxel loop.
 */

import { Random } from "../base/random.ts";
import type { Volume } from "./volume.ts";

/** Class names of the synthetic labels, indexed by label value. */
export const SYNTH_CLASSES = ["background", "lung", "infection"] as const;

/** Default phantom shape [D, H, W]: small enough to generate in well under a second. */
export const DEFAULT_SYNTH_SHAPE: [number, number, number] = [48, 96, 96];

/**
 * Ground-glass opacity (−700…−300 HU), consolidation (−100…+50 HU), or a ground-glass lesion
 * with a consolidated core.
 */
export type LesionKind = "ggo" | "consolidation" | "mixed";

/** Lesion-count distributions of {@link synthCase}: see {@link SynthOptions.cohort}. */
export const LESION_COHORTS = ["mixed", "positive"] as const;
export type LesionCohort = (typeof LESION_COHORTS)[number];

/**
 * Cohorts `voxseg synth` generates: the two lesion-count distributions on one fixed grid, and
 * "clinical" (COVID-19-positive patients on heterogeneous grids, orientations and intensity
 * conventions; see ./synth_clinical.ts).
 */
export const SYNTH_COHORTS = [...LESION_COHORTS, "clinical"] as const;
export type SynthCohort = (typeof SYNTH_COHORTS)[number];

export interface SynthOptions {
  /** [D, H, W]; default {@link DEFAULT_SYNTH_SHAPE}. */
  shape?: [number, number, number];
  /**
   * [z, y, x] voxel spacing in mm. Default: a 340–420 mm field of view across W with square
   * pixels, and a 256–384 mm craniocaudal extent over D (2.0–3.0 mm slices at D = 128), so the
   * spacing is anisotropic and the anatomy life-sized at any shape.
   */
  spacingMm?: [number, number, number];
  /** Number of infection lesions; default drawn per case, see {@link SynthOptions.cohort}. */
  lesionCount?: number;
  /**
   * How the lesion count is drawn when `lesionCount` is not given. "mixed" (default): a
   * screening-like mix, 15 % of cases without infection and 15 % with one small lesion, the
   * rest 2–8 lesions. "positive": every case has 2–8 lesions, as in a COVID-19-positive cohort
   * (the public COVID-19 CT segmentation sets are of this kind).
   */
  cohort?: LesionCohort;
  /** Lesion kinds to draw from; default all three. */
  lesionKinds?: LesionKind[];
  /** Standard deviation of the added sensor noise in HU; default drawn in 8–18. */
  noiseHu?: number;
}

/** One drawn lesion, for tests and for describing a case. */
export interface SynthLesion {
  kind: LesionKind;
  /** Centre voxel [z, y, x]. */
  center: [number, number, number];
  /** Largest semi-axis in mm. */
  radiusMm: number;
  /** Voxels labelled infection by this lesion (overlaps with earlier lesions not counted). */
  voxels: number;
}

export interface SynthCase {
  /** int16 Hounsfield units. */
  image: Volume;
  /** uint8: 0 background, 1 lung (vessels included), 2 infection. */
  label: Volume;
  lesions: SynthLesion[];
}

// Tissue codes of the intermediate map; the tables below give each its HU and texture.
const AIR = 0, FAT = 1, MUSCLE = 2, MEDIASTINUM = 3, CORTEX = 4, MARROW = 5, DISC = 6, CSF = 7;
const LUNG = 8, VESSEL = 9, BLOOD = 10, ABDOMEN = 11, AIRWAY = 12;
const TISSUE_HU = Float32Array.of(-1000, -100, 45, -30, 800, 300, 85, 10, -865, 40, 45, 55, -1000);
/** Amplitude (HU) of the coarse (~16 mm) and fine (~6 mm) texture per tissue. */
const TISSUE_COARSE = Float32Array.of(0, 12, 8, 70, 120, 60, 10, 3, 30, 0, 6, 8, 0);
const TISSUE_FINE = Float32Array.of(3, 8, 6, 20, 60, 40, 6, 3, 18, 5, 5, 5, 3);

/** Angular resolution of the per-slice lung outline tables. */
const ANGLE_BINS = 256;

interface LungParams {
  cu: number;
  cv: number;
  au: number;
  av: number;
  /** Blend between an ellipse (0) and a squarer superellipse (1). */
  square: number;
  /** Outline harmonics j = 2, 3, 4: amplitude, phase, phase drift along t. */
  harmonics: [number, number, number][];
}

interface Anatomy {
  bodyA: number;
  bodyB: number;
  bodyCv: number;
  flat: number;
  fat: number;
  ribR: number;
  ribW: number;
  ribInner: number;
  tBase: number;
  tApex: number;
  domeH: number;
  lungs: [LungParams, LungParams];
  heart: { cu: number; cv: number; au: number; av: number; t0: number; t1: number };
  trachea: { tCarina: number; cu: number; cv: number; rMm: number };
  spine: { vC: number; rMm: number; pitchMm: number; discFrac: number; phase: number };
  ribs: { pitchMm: number; dropMm: number; phase: number; halfFrac: number };
  aorta: { du: number; rMm: number };
  gravityHu: number;
}

function sampleAnatomy(rng: Random, lx: number): Anatomy {
  const bodyA = rng.uniform(0.84, 0.93), bodyB = rng.uniform(0.6, 0.7);
  const fat = rng.uniform(0.03, 0.09), muscle = rng.uniform(0.04, 0.07), ribW = 0.026;
  const ribR = 1 - fat - muscle - ribW;
  const tBase = rng.uniform(0.1, 0.2), tApex = rng.uniform(0.9, 0.97);
  const domeH = rng.uniform(0.1, 0.17);
  const lung = (side: number): LungParams => ({
    cu: side * rng.uniform(0.33, 0.39),
    cv: rng.uniform(0, 0.06),
    au: rng.uniform(0.25, 0.3) * (side < 0 ? 1.04 : 0.97),
    av: rng.uniform(0.46, 0.54),
    square: rng.uniform(0.2, 0.6),
    harmonics: [2, 3, 4].map((j) => [
      rng.uniform(0, 0.06) / Math.sqrt(j - 1),
      rng.uniform(0, 2 * Math.PI),
      rng.uniform(-3, 3),
    ]),
  });
  const heartT0 = tBase + domeH * rng.uniform(0.5, 0.8);
  return {
    bodyA,
    bodyB,
    bodyCv: rng.uniform(-0.02, 0.05),
    flat: rng.uniform(0.3, 0.7),
    fat,
    ribR,
    ribW,
    ribInner: ribR - ribW - 0.012,
    tBase,
    tApex,
    domeH,
    lungs: [lung(-1), lung(1)],
    heart: {
      cu: rng.uniform(0.04, 0.12),
      cv: rng.uniform(-0.2, -0.1),
      au: rng.uniform(0.26, 0.32),
      av: rng.uniform(0.22, 0.28),
      t0: heartT0,
      t1: heartT0 + rng.uniform(0.3, 0.4),
    },
    trachea: {
      tCarina: tBase + rng.uniform(0.5, 0.6) * (tApex - tBase),
      cu: rng.uniform(-0.03, 0.03),
      cv: rng.uniform(-0.12, -0.04),
      rMm: rng.uniform(0.018, 0.024) * lx,
    },
    spine: {
      vC: bodyB * rng.uniform(0.58, 0.64),
      rMm: rng.uniform(0.04, 0.05) * lx,
      pitchMm: rng.uniform(0.07, 0.08) * lx,
      discFrac: rng.uniform(0.18, 0.25),
      phase: rng.next(),
    },
    ribs: {
      pitchMm: rng.uniform(0.065, 0.075) * lx,
      dropMm: rng.uniform(0.08, 0.12) * lx,
      phase: rng.next(),
      halfFrac: rng.uniform(0.15, 0.2),
    },
    aorta: { du: rng.uniform(0.06, 0.1), rMm: rng.uniform(0.028, 0.034) * lx },
    gravityHu: rng.uniform(20, 50),
  };
}

/** Lung cross-section scale at height t: 0 above the apex, growing to 1 two fifths down. */
function lungScale(an: Anatomy, t: number): number {
  const tau = (an.tApex - t) / (an.tApex - an.tBase);
  if (tau <= 0) return 0;
  return Math.pow(Math.min(1, tau / 0.45), 0.55);
}

/** Per-volume constants of {@link drawAnatomy}: landmark positions in mm, column coordinates. */
interface AnatomyFrame {
  /** Normalised (−1…1) and millimetre x of each column's centre. */
  ux: Float32Array;
  xmm: Float32Array;
  /** Spine midline x, vertebral body centre y, body and canal radii, canal centre y (mm). */
  midX: number;
  spineY: number;
  rv: number;
  rc: number;
  canalY: number;
  /** Aorta and trachea centres (mm) and the trachea's radius. */
  aoX: number;
  aoY: number;
  trX: number;
  trY: number;
  rt: number;
  /** Outline angle bins per radian. */
  binScale: number;
  /** Normalised radius past which no lung is drawn (inside the ribs). */
  lungMaxRho: number;
}

function anatomyFrame(
  an: Anatomy,
  shape: [number, number, number],
  spacing: [number, number, number],
): AnatomyFrame {
  const [, H, W] = shape;
  const [, sy, sx] = spacing;
  const lx = W * sx, ly = H * sy;
  const ux = new Float32Array(W), xmm = new Float32Array(W);
  for (let x = 0; x < W; x++) {
    ux[x] = ((x + 0.5) / W) * 2 - 1;
    xmm[x] = (x + 0.5) * sx;
  }
  const spineY = (an.bodyCv + an.spine.vC) * ly / 2 + ly / 2;
  const rv = an.spine.rMm, rc = 0.4 * rv;
  return {
    ux,
    xmm,
    midX: lx / 2 + an.trachea.cu * lx / 2,
    spineY,
    rv,
    rc,
    canalY: spineY + rv + rc + 2,
    aoX: lx / 2 + an.aorta.du * lx / 2,
    aoY: spineY - rv - an.aorta.rMm - 3,
    trX: lx / 2 + an.trachea.cu * lx / 2,
    trY: (an.trachea.cv + 1) * ly / 2,
    rt: an.trachea.rMm,
    binScale: ANGLE_BINS / (2 * Math.PI),
    lungMaxRho: an.ribInner - 0.015,
  };
}

/** What one axial slice at height t crosses: body radii, lung outlines, heart, flags. */
interface AnatomySlice {
  /** Height (0 bottom … 1 top) and z in mm. */
  t: number;
  zmm: number;
  /** Body half-axes. */
  A: number;
  B: number;
  lungOn: boolean;
  /** Per lung: centre, inverse half-axes (0 when absent), squareness. */
  lcu: Float32Array;
  lcv: Float32Array;
  linvU: Float32Array;
  linvV: Float32Array;
  lsq: Float32Array;
  /** Per lung: outline radius per angle bin, [2 · ANGLE_BINS]. */
  table: Float32Array;
  /** Heart inverse half-axes (0 when the slice misses it). */
  hInvU: number;
  hInvV: number;
  tracheaOn: boolean;
  aortaOn: boolean;
  ribOn: boolean;
  /** The slice cuts an intervertebral disc. */
  disc: boolean;
}

function newSlice(): AnatomySlice {
  return {
    t: 0,
    zmm: 0,
    A: 0,
    B: 0,
    lungOn: false,
    lcu: new Float32Array(2),
    lcv: new Float32Array(2),
    linvU: new Float32Array(2),
    linvV: new Float32Array(2),
    lsq: new Float32Array(2),
    table: new Float32Array(2 * ANGLE_BINS),
    hInvU: 0,
    hInvV: 0,
    tracheaOn: false,
    aortaOn: false,
    ribOn: false,
    disc: false,
  };
}

/** Fills `s` for slice z of D (its buffers are reused from slice to slice). */
function setSlice(an: Anatomy, f: AnatomyFrame, s: AnatomySlice, z: number, D: number, sz: number) {
  const t = (z + 0.5) / D, zmm = (z + 0.5) * sz;
  s.t = t;
  s.zmm = zmm;
  s.A = an.bodyA * (1 + 0.06 * (t - 0.5));
  s.B = an.bodyB * (1 + 0.03 * (t - 0.5));
  s.lungOn = false;
  for (let k = 0; k < 2; k++) {
    const p = an.lungs[k], sc = lungScale(an, t);
    s.lungOn ||= sc > 0.02;
    s.lcu[k] = p.cu * (0.8 + 0.2 * sc);
    s.lcv[k] = p.cv + 0.08 * (1 - sc);
    s.linvU[k] = sc > 0.02 ? 1 / (p.au * sc) : 0;
    s.linvV[k] = sc > 0.02 ? 1 / (p.av * sc) : 0;
    s.lsq[k] = p.square;
    for (let b = 0; b < ANGLE_BINS; b++) {
      const theta = (b + 0.5) / f.binScale - Math.PI;
      let r = 1;
      for (let j = 0; j < 3; j++) {
        const [amp, ph, drift] = p.harmonics[j];
        r += amp * Math.cos((j + 2) * theta + ph + drift * t);
      }
      s.table[k * ANGLE_BINS + b] = r;
    }
  }
  const h = an.heart;
  const hs = t > h.t0 && t < h.t1 ? Math.sqrt(1 - ((2 * (t - h.t0)) / (h.t1 - h.t0) - 1) ** 2) : 0;
  s.hInvU = hs > 0.05 ? 1 / (h.au * hs) : 0;
  s.hInvV = hs > 0.05 ? 1 / (h.av * hs) : 0;
  s.tracheaOn = t > an.trachea.tCarina;
  s.aortaOn = t > an.tBase - 0.05 && t < an.trachea.tCarina + 0.05;
  s.ribOn = t > an.tBase - 0.1 && t < an.tApex + 0.03;
  const sp = zmm / an.spine.pitchMm + an.spine.phase;
  s.disc = sp - Math.floor(sp) < an.spine.discFrac;
}

/**
 * Spine tissue at (dxs, dys, dyc) mm from the midline, the vertebral body centre and the
 * canal centre: body (discs between), canal, arch and spinous process; −1 outside.
 */
function spineTissue(f: AnatomyFrame, disc: boolean, dxs: number, dys: number, dyc: number) {
  const { rv, rc } = f;
  if (!(dxs > -1.3 * rv && dxs < 1.3 * rv && dys > -1.1 * rv && dys < 3.6 * rv)) return -1;
  const dBody = Math.sqrt(dxs * dxs + dys * dys) / rv;
  const dCanal = Math.sqrt(dxs * dxs + dyc * dyc) / rc;
  if (dBody < 1) return disc ? DISC : dBody > 0.85 ? CORTEX : MARROW;
  if (dCanal < 1) return CSF;
  if (dCanal < 1.8 && dyc > -0.3 * rc) return CORTEX;
  if (dyc > 0 && dyc < 3.2 * rc && dxs > -0.35 * rc && dxs < 0.35 * rc) return CORTEX;
  return -1;
}

/** Chest wall at normalised radius rho (past the ribs' inner edge): muscle, with the ribs. */
function chestWallTissue(
  an: Anatomy,
  s: AnatomySlice,
  rho: number,
  du: number,
  dv: number,
): number {
  const dr = (rho - an.ribR) / an.ribW;
  if (!(s.ribOn && dr > -1 && dr < 1)) return MUSCLE;
  // Angle from the posterior midline: ribs run from the spine round to the
  // costal cartilages, dropping as they go forward.
  let phi = Math.abs(Math.atan2(dv, du) - Math.PI / 2);
  if (phi > Math.PI) phi = 2 * Math.PI - phi;
  if (!(phi > 0.3 && phi < Math.PI - 0.5)) return MUSCLE;
  const ph = (s.zmm + an.ribs.dropMm * phi / Math.PI) / an.ribs.pitchMm + an.ribs.phase;
  const dz = (ph - Math.floor(ph) - 0.5) / an.ribs.halfFrac;
  const e = dr * dr + dz * dz;
  return e < 1 ? (e > 0.45 ? CORTEX : MARROW) : MUSCLE;
}

/** Whether (u, v) lies inside one of the slice's lung outlines. */
function inLung(f: AnatomyFrame, s: AnatomySlice, u: number, v: number): boolean {
  for (let k = 0; k < 2; k++) {
    if (s.linvU[k] === 0) continue;
    const a = (u - s.lcu[k]) * s.linvU[k], b = (v - s.lcv[k]) * s.linvV[k];
    if (a > 1.3 || a < -1.3 || b > 1.3 || b < -1.3) continue;
    const a2 = a * a, b2 = b * b, sq = s.lsq[k];
    const r2 = (1 - sq) * (a2 + b2) + sq * Math.sqrt(a2 * a2 + b2 * b2);
    const bin = Math.min(ANGLE_BINS - 1, Math.floor((Math.atan2(b, a) + Math.PI) * f.binScale));
    const rr = s.table[k * ANGLE_BINS + bin];
    if (r2 < rr * rr) return true;
  }
  return false;
}

/**
 * Thoracic cavity at normalised (u, v), body radius rho (rho2 squared), dv the body-relative
 * v / B, and (xmm, ymm) in mm: abdomen below the diaphragm dome, aorta, trachea, heart,
 * lungs, else mediastinum (muscle near the ribs).
 */
function cavityTissue(
  an: Anatomy,
  f: AnatomyFrame,
  s: AnatomySlice,
  p: { u: number; v: number; rho: number; rho2: number; dv: number; xmm: number; ymm: number },
): number {
  const { u, v, rho, rho2, dv, xmm, ymm } = p;
  // Below the diaphragm dome (higher centrally and on the right, lower posteriorly) lies the
  // abdomen.
  const dome = an.tBase + an.domeH * (1 - rho2 / (an.ribInner * an.ribInner)) -
    0.06 * (dv > 0 ? dv : 0) + (u < 0 ? 0.2 * an.domeH : 0);
  if (s.t < dome) return ABDOMEN;
  if (s.aortaOn) {
    const ax = xmm - f.aoX, ay = ymm - f.aoY;
    if (ax * ax + ay * ay < an.aorta.rMm * an.aorta.rMm) return BLOOD;
  }
  if (s.tracheaOn) {
    const rt = f.rt, tx = xmm - f.trX, ty = ymm - f.trY, d2 = tx * tx + ty * ty;
    if (d2 < (rt + 2.5) * (rt + 2.5)) return d2 < rt * rt ? AIRWAY : MUSCLE;
  }
  if (s.hInvU > 0) {
    const h = an.heart;
    const hu = (u - h.cu) * s.hInvU, hv = (v - h.cv) * s.hInvV, hr2 = hu * hu + hv * hv;
    if (hr2 < 1) return hr2 > 0.82 ? FAT : BLOOD;
  }
  if (rho > f.lungMaxRho) return MUSCLE;
  if (s.lungOn && inLung(f, s, u, v)) return LUNG;
  return MEDIASTINUM;
}

/**
 * Draws the tissue map and the lung label (1) slice by slice: outside the body stays AIR,
 * then from the outside in: fat, spine, chest wall and ribs, the thoracic cavity.
 */
function drawAnatomy(
  an: Anatomy,
  shape: [number, number, number],
  spacing: [number, number, number],
  tissue: Uint8Array,
  label: Uint8Array,
) {
  const [D, H, W] = shape;
  const [sz, sy] = spacing;
  const f = anatomyFrame(an, shape, spacing);
  const s = newSlice();
  for (let z = 0; z < D; z++) {
    setSlice(an, f, s, z, D, sz);
    for (let y = 0; y < H; y++) {
      const v = ((y + 0.5) / H) * 2 - 1, ymm = (y + 0.5) * sy;
      const vb = v - an.bodyCv, dv = vb / s.B, dv2 = dv * dv, flat = vb > 0 ? an.flat : 0;
      const dys = ymm - f.spineY, dyc = ymm - f.canalY;
      const row = W * (y + H * z);
      for (let x = 0; x < W; x++) {
        const u = f.ux[x], du = u / s.A, du2 = du * du;
        const rho2 = (1 - flat) * (du2 + dv2) + flat * Math.sqrt(du2 * du2 + dv2 * dv2);
        if (rho2 >= 1) continue; // air: tissue stays AIR, label 0
        const i = row + x, rho = Math.sqrt(rho2);
        if (rho > 1 - an.fat) {
          tissue[i] = FAT;
          continue;
        }
        const spine = spineTissue(f, s.disc, f.xmm[x] - f.midX, dys, dyc);
        if (spine >= 0) {
          tissue[i] = spine;
          continue;
        }
        if (rho > an.ribInner) {
          tissue[i] = chestWallTissue(an, s, rho, du, dv);
          continue;
        }
        const code = cavityTissue(an, f, s, { u, v, rho, rho2, dv, xmm: f.xmm[x], ymm });
        tissue[i] = code;
        if (code === LUNG) label[i] = 1;
      }
    }
  }
}

interface Segment {
  a: [number, number, number];
  b: [number, number, number];
  r: number;
}

function unit(v: [number, number, number]): [number, number, number] {
  const n = Math.hypot(v[0], v[1], v[2]) || 1;
  return [v[0] / n, v[1] / n, v[2] / n];
}

/** Index of the voxel containing the point (x, y, z mm), or -1 outside the volume. */
function voxelAt(p: [number, number, number], shape: number[], spacing: number[]): number {
  const [D, H, W] = shape;
  const x = Math.floor(p[0] / spacing[2]), y = Math.floor(p[1] / spacing[1]);
  const z = Math.floor(p[2] / spacing[0]);
  if (x < 0 || y < 0 || z < 0 || x >= W || y >= H || z >= D) return -1;
  return x + W * (y + H * z);
}

/**
 * Grows a pulmonary vessel tree from each hilum: a few main branches heading laterally, each
 * splitting in two, thinner and shorter, until the vessels fall below a voxel or leave the lung.
 * Points are (x, y, z) in mm from the volume corner.
 */
function growVessels(
  rng: Random,
  an: Anatomy,
  shape: [number, number, number],
  spacing: [number, number, number],
  label: Uint8Array,
): Segment[] {
  const [D, H, W] = shape;
  const lx = W * spacing[2], ly = H * spacing[1], lz = D * spacing[0];
  const rMin = Math.max(0.35 * Math.min(spacing[1], spacing[2]), 0.4);
  const segments: Segment[] = [];
  for (const lung of an.lungs) {
    const side = Math.sign(lung.cu);
    const stack: (Segment & { depth: number; dir: [number, number, number] })[] = [];
    const mains = rng.int(8, 13);
    for (let m = 0; m < mains; m++) {
      // Upper- and lower-lobe vessels leave the hilum at slightly different heights.
      const hilum: [number, number, number] = [
        (1 + lung.cu - side * 0.45 * lung.au) * lx / 2,
        (1 + lung.cv + rng.uniform(-0.05, 0.05)) * ly / 2,
        (an.tBase + rng.uniform(0.35, 0.55) * (an.tApex - an.tBase)) * lz,
      ];
      const dir = unit([side * rng.uniform(0.3, 1), rng.uniform(-1, 1), rng.uniform(-1.3, 1.3)]);
      const len = rng.uniform(0.09, 0.13) * lx;
      const b: [number, number, number] = [
        hilum[0] + dir[0] * len,
        hilum[1] + dir[1] * len,
        hilum[2] + dir[2] * len,
      ];
      stack.push({ a: hilum, b, r: rng.uniform(0.011, 0.014) * lx, depth: 0, dir });
    }
    while (stack.length > 0) {
      const s = stack.pop()!;
      segments.push({ a: s.a, b: s.b, r: s.r });
      if (s.depth >= 8 || s.r * 0.75 < rMin) continue;
      const end = voxelAt(s.b, shape, spacing);
      if (end < 0 || label[end] !== 1) continue;
      const len = Math.hypot(s.b[0] - s.a[0], s.b[1] - s.a[1], s.b[2] - s.a[2]);
      const children = rng.next() < 0.2 ? 3 : 2;
      for (let c = 0; c < children; c++) {
        const spread = rng.uniform(0.35, 0.8);
        const dir = unit([
          s.dir[0] + spread * rng.normal(),
          s.dir[1] + spread * rng.normal(),
          s.dir[2] + spread * rng.normal(),
        ]);
        const l = len * rng.uniform(0.65, 0.85);
        stack.push({
          a: s.b,
          b: [s.b[0] + dir[0] * l, s.b[1] + dir[1] * l, s.b[2] + dir[2] * l],
          r: s.r * rng.uniform(0.68, 0.8),
          depth: s.depth + 1,
          dir,
        });
      }
    }
  }
  return segments;
}

/** Paints each segment as a capsule of VESSEL over LUNG voxels (labels stay lung). */
function drawVessels(
  segments: Segment[],
  shape: [number, number, number],
  spacing: [number, number, number],
  tissue: Uint8Array,
) {
  const [D, H, W] = shape;
  const [sz, sy, sx] = spacing;
  for (const { a, b, r } of segments) {
    const ex = b[0] - a[0], ey = b[1] - a[1], ez = b[2] - a[2];
    const ee = ex * ex + ey * ey + ez * ez || 1;
    const x0 = Math.max(0, Math.floor((Math.min(a[0], b[0]) - r) / sx));
    const x1 = Math.min(W - 1, Math.ceil((Math.max(a[0], b[0]) + r) / sx));
    const y0 = Math.max(0, Math.floor((Math.min(a[1], b[1]) - r) / sy));
    const y1 = Math.min(H - 1, Math.ceil((Math.max(a[1], b[1]) + r) / sy));
    const z0 = Math.max(0, Math.floor((Math.min(a[2], b[2]) - r) / sz));
    const z1 = Math.min(D - 1, Math.ceil((Math.max(a[2], b[2]) + r) / sz));
    const r2 = r * r;
    for (let z = z0; z <= z1; z++) {
      const pz = (z + 0.5) * sz - a[2];
      for (let y = y0; y <= y1; y++) {
        const py = (y + 0.5) * sy - a[1], row = W * (y + H * z);
        for (let x = x0; x <= x1; x++) {
          const i = row + x;
          if (tissue[i] !== LUNG) continue;
          const px = (x + 0.5) * sx - a[0];
          let s = (px * ex + py * ey + pz * ez) / ee;
          s = s < 0 ? 0 : s > 1 ? 1 : s;
          const qx = px - s * ex, qy = py - s * ey, qz = pz - s * ez;
          if (qx * qx + qy * qy + qz * qz < r2) tissue[i] = VESSEL;
        }
      }
    }
  }
}

/**
 * Value noise: uniform lattice values every `cellMm`, smoothly (fade-weighted trilinear)
 * interpolated to every voxel. Values lie in [-1, 1] with a standard deviation near 0.35.
 */
export function smoothNoise(
  shape: [number, number, number],
  spacing: [number, number, number],
  cellMm: number,
  rng: Random,
): Float32Array {
  const [D, H, W] = shape;
  const axis = (n: number, s: number) => {
    const i0 = new Int32Array(n), f = new Float32Array(n);
    for (let k = 0; k < n; k++) {
      const p = ((k + 0.5) * s) / cellMm, fl = Math.floor(p), q = p - fl;
      i0[k] = fl;
      f[k] = q * q * (3 - 2 * q);
    }
    return { i0, f, g: Math.floor((n * s) / cellMm) + 2 };
  };
  const az = axis(D, spacing[0]), ay = axis(H, spacing[1]), ax = axis(W, spacing[2]);
  const gy = ay.g, gx = ax.g;
  const lattice = new Float32Array(az.g * gy * gx);
  for (let i = 0; i < lattice.length; i++) lattice[i] = rng.uniform(-1, 1);
  const out = new Float32Array(D * H * W), row = new Float32Array(gx);
  for (let z = 0; z < D; z++) {
    const iz = az.i0[z], fz = az.f[z];
    for (let y = 0; y < H; y++) {
      const iy = ay.i0[y], fy = ay.f[y];
      const b00 = (iz * gy + iy) * gx, b01 = b00 + gx, b10 = b00 + gy * gx, b11 = b10 + gx;
      const w00 = (1 - fz) * (1 - fy), w01 = (1 - fz) * fy, w10 = fz * (1 - fy), w11 = fz * fy;
      for (let g = 0; g < gx; g++) {
        row[g] = w00 * lattice[b00 + g] + w01 * lattice[b01 + g] + w10 * lattice[b10 + g] +
          w11 * lattice[b11 + g];
      }
      const o = W * (y + H * z);
      for (let x = 0; x < W; x++) {
        const i = ax.i0[x], a = row[i];
        out[o + x] = a + (row[i + 1] - a) * ax.f[x];
      }
    }
  }
  return out;
}

/** Tissue map → HU with per-tissue texture, and a gravity-dependent lung density gradient. */
function toHounsfield(
  an: Anatomy,
  shape: [number, number, number],
  tissue: Uint8Array,
  coarse: Float32Array,
  fine: Float32Array,
): Float32Array {
  const [D, H, W] = shape;
  const hu = new Float32Array(tissue.length);
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      const gravity = an.gravityHu * (((y + 0.5) / H) * 2 - 1);
      const row = W * (y + H * z);
      for (let i = row; i < row + W; i++) {
        const c = tissue[i];
        hu[i] = TISSUE_HU[c] + TISSUE_COARSE[c] * coarse[i] + TISSUE_FINE[c] * fine[i] +
          (c === LUNG ? gravity : 0);
      }
    }
  }
  return hu;
}

function pickLesionKind(rng: Random, kinds: LesionKind[]): LesionKind {
  const weight = { ggo: 0.55, mixed: 0.25, consolidation: 0.2 };
  const total = kinds.reduce((s, k) => s + weight[k], 0);
  let r = rng.uniform(0, total);
  for (const k of kinds) {
    r -= weight[k];
    if (r < 0) return k;
  }
  return kinds[kinds.length - 1];
}

/** A lung voxel, preferring peripheral and posterior (dependent) ones as COVID-19 does. */
function pickLesionCenter(
  rng: Random,
  shape: [number, number, number],
  label: Uint8Array,
): number {
  const [D, H, W] = shape;
  const candidates: number[] = [];
  for (let tries = 0; tries < 400 && candidates.length < 6; tries++) {
    const i = rng.int(0, D * H * W);
    if (label[i] === 1) candidates.push(i);
  }
  if (candidates.length === 0) return -1;
  if (rng.next() < 0.3) return candidates[rng.int(0, candidates.length)];
  let best = candidates[0], bestScore = -Infinity;
  for (const i of candidates) {
    const x = i % W, y = Math.floor(i / W) % H;
    // Posterior (large y) and lateral (far from the midline) score high.
    const score = y / H + 0.8 * Math.abs(x / W - 0.5) * 2;
    if (score > bestScore) [best, bestScore] = [i, score];
  }
  return best;
}

/** A random rotation matrix (row-major 3×3) from a uniform unit quaternion. */
function randomRotation(rng: Random): number[] {
  const [w, x, y, z] = unit4([rng.normal(), rng.normal(), rng.normal(), rng.normal()]);
  return [
    1 - 2 * (y * y + z * z),
    2 * (x * y - w * z),
    2 * (x * z + w * y),
    2 * (x * y + w * z),
    1 - 2 * (x * x + z * z),
    2 * (y * z - w * x),
    2 * (x * z - w * y),
    2 * (y * z + w * x),
    1 - 2 * (x * x + y * y),
  ];
}

function unit4(q: number[]): number[] {
  const n = Math.hypot(...q) || 1;
  return q.map((c) => c / n);
}

/**
 * Draws infection lesions: rotated ellipsoids with noise-perturbed borders, clipped to the lungs.
 * Labels become 2; HU is blended towards the lesion's density (ground glass keeps vessels
 * visible, consolidation hides them).
 */
function drawLesions(
  rng: Random,
  options: SynthOptions,
  shape: [number, number, number],
  spacing: [number, number, number],
  label: Uint8Array,
  hu: Float32Array,
  coarse: Float32Array,
  fine: Float32Array,
): SynthLesion[] {
  const [D, H, W] = shape;
  const [sz, sy, sx] = spacing;
  const lx = W * sx;
  const kinds = options.lesionKinds ?? ["ggo", "consolidation", "mixed"];
  let count = options.lesionCount;
  let smallOnly = false;
  if (count === undefined) {
    const r = rng.next();
    if (options.cohort === "positive") count = rng.int(2, 9);
    else if (r < 0.15) count = 0;
    else if (r < 0.3) [count, smallOnly] = [1, true];
    else count = rng.int(2, 9);
  }
  const lesions: SynthLesion[] = [];
  for (let n = 0; n < count; n++) {
    const kind = pickLesionKind(rng, kinds);
    // The centre search draws a shape-dependent number of values: give it its own stream so
    // the kinds and sizes of a seed's lesions do not depend on the shape.
    const c = pickLesionCenter(rng.fork(), shape, label);
    const big = !smallOnly && rng.next() < 0.12;
    const frac = smallOnly
      ? rng.uniform(0.012, 0.022)
      : big
      ? rng.uniform(0.08, 0.12)
      : kind === "consolidation"
      ? rng.uniform(0.015, 0.05)
      : rng.uniform(0.02, 0.08);
    const radius = frac * lx;
    const semi = [radius, radius * rng.uniform(0.6, 1), radius * rng.uniform(0.6, 1)];
    const rot = randomRotation(rng);
    const irregular = rng.uniform(0.25, 0.6);
    const ggoHu = rng.uniform(-660, -380), solidHu = rng.uniform(-50, 40);
    if (c < 0) continue;
    const cx = c % W, cy = Math.floor(c / W) % H, cz = Math.floor(c / (W * H));
    const ext = radius * (1 + irregular);
    const x0 = Math.max(0, Math.floor(cx - ext / sx)),
      x1 = Math.min(W - 1, Math.ceil(cx + ext / sx));
    const y0 = Math.max(0, Math.floor(cy - ext / sy)),
      y1 = Math.min(H - 1, Math.ceil(cy + ext / sy));
    const z0 = Math.max(0, Math.floor(cz - ext / sz)),
      z1 = Math.min(D - 1, Math.ceil(cz + ext / sz));
    const ia = 1 / semi[0], ib = 1 / semi[1], ic = 1 / semi[2];
    const core = kind === "consolidation" ? Infinity : kind === "mixed" ? 0.55 : -Infinity;
    let voxels = 0;
    for (let z = z0; z <= z1; z++) {
      const pz = (z - cz) * sz;
      for (let y = y0; y <= y1; y++) {
        const py = (y - cy) * sy, row = W * (y + H * z);
        for (let x = x0; x <= x1; x++) {
          const i = row + x;
          if (label[i] !== 1) continue;
          const px = (x - cx) * sx;
          const qa = (rot[0] * px + rot[1] * py + rot[2] * pz) * ia;
          const qb = (rot[3] * px + rot[4] * py + rot[5] * pz) * ib;
          const qc = (rot[6] * px + rot[7] * py + rot[8] * pz) * ic;
          const q = Math.sqrt(qa * qa + qb * qb + qc * qc);
          const thr = 1 + irregular * (1.1 * coarse[i] + 0.3 * fine[i]);
          if (q >= thr) continue;
          label[i] = 2;
          voxels++;
          // Soft border: the density ramps up over the outer part of the lesion.
          const w = Math.min(1, (thr - q) / (0.2 * thr) + 0.6);
          if (q < core * thr) {
            const target = solidHu + 25 * fine[i];
            hu[i] += (target - hu[i]) * w;
          } else {
            const target = ggoHu + 60 * fine[i] + 40 * coarse[i];
            if (target > hu[i]) hu[i] += (target - hu[i]) * w;
          }
        }
      }
    }
    lesions.push({ kind, center: [cz, cy, cx], radiusMm: radius, voxels });
  }
  return lesions;
}

/** In-place smoothing along one axis with weights [e, 1 − 2e, e] (edges clamped). */
function blurAxis(data: Float32Array, shape: [number, number, number], axis: 0 | 1 | 2, e: number) {
  const [D, H, W] = shape;
  const n = [D, H, W][axis], stride = [H * W, W, 1][axis];
  const line = new Float32Array(n), c = 1 - 2 * e;
  const outer = axis === 0 ? 1 : D, mid = axis === 2 ? H : axis === 1 ? W : H * W;
  for (let o = 0; o < outer; o++) {
    for (let m = 0; m < mid; m++) {
      const base = axis === 0 ? m : axis === 1 ? o * H * W + m : o * H * W + m * W;
      for (let k = 0; k < n; k++) line[k] = data[base + k * stride];
      for (let k = 0; k < n; k++) {
        const a = line[k > 0 ? k - 1 : 0], b = line[k < n - 1 ? k + 1 : n - 1];
        data[base + k * stride] = c * line[k] + e * (a + b);
      }
    }
  }
}

/** Adds Gaussian noise (from a table of normals indexed by the seeded stream) and rounds. */
function quantize(hu: Float32Array, sigma: number, rng: Random): Int16Array {
  const table = new Float32Array(1 << 16);
  for (let k = 0; k < table.length; k++) table[k] = rng.normal(0, sigma);
  const out = new Int16Array(hu.length);
  for (let i = 0; i < hu.length; i++) {
    const v = Math.round(hu[i] + table[(rng.next() * 65536) | 0]);
    out[i] = v < -1024 ? -1024 : v > 3071 ? 3071 : v;
  }
  return out;
}

/** NIfTI RAS affine of an axial CT: x to patient left (−x world), y posterior, z superior. */
function chestAffine(
  rng: Random,
  shape: [number, number, number],
  spacing: [number, number, number],
): number[] {
  const [D, H, W] = shape;
  const [sz, sy, sx] = spacing;
  const ox = (sx * (W - 1)) / 2 + rng.uniform(-15, 15);
  const oy = (sy * (H - 1)) / 2 + rng.uniform(0, 40);
  const oz = -rng.uniform(150, 350) - (sz * (D - 1)) / 2;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return [-sx, 0, 0, round(ox), 0, -sy, 0, round(oy), 0, 0, sz, round(oz), 0, 0, 0, 1];
}

/**
 * Generates one synthetic chest CT with lung (1) and infection (2) labels.
 *
 * @example
 * const { image, label } = synthCase(7, { shape: [64, 128, 128] });
 */
export function synthCase(seed: number, options: SynthOptions = {}): SynthCase {
  const shape = options.shape ?? DEFAULT_SYNTH_SHAPE;
  if (shape.length !== 3 || shape.some((n) => !Number.isInteger(n) || n < 4)) {
    throw new RangeError(`synthCase: shape must be 3 integers ≥ 4, got [${shape}]`);
  }
  const [D, H, W] = shape;
  const rng = new Random(seed);
  const inPlane = rng.uniform(340, 420) / W, slice = (rng.uniform(2, 3) * 128) / D;
  const round = (n: number) => Math.round(n * 1e4) / 1e4;
  const spacing: [number, number, number] = options.spacingMm ??
    [round(slice), round(inPlane), round(inPlane)];
  // One stream per stage, so the patient (anatomy, lesion count and kinds, noise level) does
  // not change with the shape even though finer grids draw more vessels and noise.
  const stage = { anatomy: rng.fork(), vessels: rng.fork(), texture: rng.fork() };
  const stage2 = { lesions: rng.fork(), noise: rng.fork(), affine: rng.fork() };
  const sigma = options.noiseHu ?? rng.uniform(8, 18);
  const an = sampleAnatomy(stage.anatomy, W * spacing[2]);
  const n = D * H * W;
  const tissue = new Uint8Array(n).fill(AIR), labels = new Uint8Array(n);
  drawAnatomy(an, shape, spacing, tissue, labels);
  drawVessels(growVessels(stage.vessels, an, shape, spacing, labels), shape, spacing, tissue);
  const lx = W * spacing[2];
  const coarse = smoothNoise(shape, spacing, 0.04 * lx, stage.texture);
  const fine = smoothNoise(shape, spacing, 0.015 * lx, stage.texture);
  const hu = toHounsfield(an, shape, tissue, coarse, fine);
  const lesions = drawLesions(stage2.lesions, options, shape, spacing, labels, hu, coarse, fine);
  // Scanner point-spread: a little in-plane blur, a little across slices.
  blurAxis(hu, shape, 2, 0.15);
  blurAxis(hu, shape, 1, 0.15);
  blurAxis(hu, shape, 0, 0.08);
  const data = quantize(hu, sigma, stage2.noise);
  const affine = chestAffine(stage2.affine, shape, spacing);
  const geometry = { shape: [D, H, W] as [number, number, number], spacingMm: spacing, affine };
  return {
    image: { ...geometry, data },
    label: { ...geometry, affine: [...affine], data: labels },
    lesions,
  };
}
