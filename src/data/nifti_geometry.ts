/**
 * NIfTI geometry: the header fields that place voxels in the world (pixdim, qform quaternion and
 * offset, sform rows, their codes) and the conversions between them and a 4×4 affine. Kept
 * apart from the file format so a case can carry and restore a source file's geometry without
 * reading or writing NIfTI bytes.
 */

import type { Shape3 } from "./volume.ts";

/** The header fields that place voxels in the world; enough to restore a file's geometry. */
export interface NiftiGeometry {
  /** pixdim[0..7]: pixdim[0] is qfac (±1), [1..3] the x, y, z voxel size. */
  pixdim: number[];
  /** Spatial and temporal units code (2 = mm, 10 = mm + s). */
  xyztUnits: number;
  qformCode: number;
  sformCode: number;
  /** Quaternion b, c, d of the qform rotation. */
  quatern: [number, number, number];
  /** qform translation x, y, z (mm). */
  qoffset: [number, number, number];
  /** The sform's three rows, 4 numbers each (srow_x, srow_y, srow_z). */
  srow: number[];
}

/** The qform affine: rotation from the quaternion, zooms from pixdim, qfac on z. */
export function qformAffine(g: NiftiGeometry): number[] {
  let [b, c, d] = g.quatern;
  let a2 = 1 - (b * b + c * c + d * d);
  if (a2 < 1e-7) {
    // Nearly a 180° rotation: renormalise (b, c, d), as nifti1_io and nibabel do.
    const n = Math.hypot(b, c, d);
    [b, c, d] = [b / n, c / n, d / n];
    a2 = 0;
  }
  const a = Math.sqrt(a2);
  const r = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const qfac = g.pixdim[0] < 0 ? -1 : 1;
  const zoom = [g.pixdim[1] || 1, g.pixdim[2] || 1, (g.pixdim[3] || 1) * qfac];
  const out: number[] = [];
  for (let i = 0; i < 3; i++) out.push(...r[i].map((v, j) => v * zoom[j]), g.qoffset[i]);
  return [...out, 0, 0, 0, 1];
}

/**
 * NIfTI geometry fields for an affine: sform = the affine (code 2, aligned), qform from its
 * rotation when the affine has no shear (code 2), else qform code 0. pixdim from `spacingMm`.
 */
export function geometryFromAffine(affine: number[], spacingMm: Shape3): NiftiGeometry {
  const [sz, sy, sx] = spacingMm;
  const quat = quaternionFromAffine(affine);
  return {
    pixdim: [quat?.qfac ?? 1, sx, sy, sz, 1, 1, 1, 1],
    xyztUnits: 2,
    qformCode: quat ? 2 : 0,
    sformCode: 2,
    quatern: quat ? quat.bcd : [0, 0, 0],
    qoffset: [affine[3], affine[7], affine[11]],
    srow: affine.slice(0, 12),
  };
}

/** Quaternion (b, c, d) and qfac of an affine's rotation; undefined if it is not a rotation. */
function quaternionFromAffine(affine: number[]) {
  const col = (j: number) => [affine[j], affine[4 + j], affine[8 + j]];
  const cols = [col(0), col(1), col(2)].map((c) => {
    const n = Math.hypot(...c);
    return c.map((v) => v / n);
  });
  const dot = (u: number[], v: number[]) => u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  if (
    !cols.every((c) => c.every(Number.isFinite)) ||
    Math.abs(dot(cols[0], cols[1])) > 1e-4 || Math.abs(dot(cols[0], cols[2])) > 1e-4 ||
    Math.abs(dot(cols[1], cols[2])) > 1e-4
  ) return undefined;
  const [c0, c1, c2] = cols;
  const det = c0[0] * (c1[1] * c2[2] - c2[1] * c1[2]) - c1[0] * (c0[1] * c2[2] - c2[1] * c0[2]) +
    c2[0] * (c0[1] * c1[2] - c1[1] * c0[2]);
  const qfac = det < 0 ? -1 : 1;
  if (qfac < 0) cols[2] = cols[2].map((v) => -v);
  // r[i][j]: row i, column j of the proper rotation.
  const r = (i: number, j: number) => cols[j][i];
  let a = r(0, 0) + r(1, 1) + r(2, 2) + 1;
  let b: number, c: number, d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = (0.25 * (r(2, 1) - r(1, 2))) / a;
    c = (0.25 * (r(0, 2) - r(2, 0))) / a;
    d = (0.25 * (r(1, 0) - r(0, 1))) / a;
  } else {
    const xd = 1 + r(0, 0) - (r(1, 1) + r(2, 2));
    const yd = 1 + r(1, 1) - (r(0, 0) + r(2, 2));
    const zd = 1 + r(2, 2) - (r(0, 0) + r(1, 1));
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r(0, 1) + r(1, 0))) / b;
      d = (0.25 * (r(0, 2) + r(2, 0))) / b;
      a = (0.25 * (r(2, 1) - r(1, 2))) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r(0, 1) + r(1, 0))) / c;
      d = (0.25 * (r(1, 2) + r(2, 1))) / c;
      a = (0.25 * (r(0, 2) - r(2, 0))) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r(0, 2) + r(2, 0))) / d;
      c = (0.25 * (r(1, 2) + r(2, 1))) / d;
      a = (0.25 * (r(1, 0) - r(0, 1))) / d;
    }
    if (a < 0) [b, c, d] = [-b, -c, -d];
  }
  return { bcd: [b, c, d] as [number, number, number], qfac };
}

/** The geometry fields of a header, as a plain JSON-safe object. */
export function niftiGeometry(h: NiftiGeometry): NiftiGeometry {
  return {
    pixdim: [...h.pixdim],
    xyztUnits: h.xyztUnits,
    qformCode: h.qformCode,
    sformCode: h.sformCode,
    quatern: [...h.quatern],
    qoffset: [...h.qoffset],
    srow: [...h.srow],
  };
}
