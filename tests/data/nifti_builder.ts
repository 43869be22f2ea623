/**
 * Builds raw NIfTI-1 / NIfTI-2 bytes field by field, independently of src/data/nifti.ts, so the
 * reader is tested against files it did not write (either byte order, extensions, scaling).
 */

export interface RawNifti {
  version?: 1 | 2;
  littleEndian?: boolean;
  dim: number[]; // dim[0..7]
  datatype: number;
  bitpix: number;
  pixdim?: number[];
  voxOffset?: number;
  sclSlope?: number;
  sclInter?: number;
  qformCode?: number;
  sformCode?: number;
  quatern?: number[];
  qoffset?: number[];
  srow?: number[];
  xyztUnits?: number;
  /** Raw bytes of the voxel data, already in the file's byte order. */
  data: Uint8Array;
  /** Bytes placed between the header (+4 extension flag bytes) and vox_offset. */
  extension?: Uint8Array;
  magic?: string;
  sizeofHdr?: number;
}

export function buildNifti(h: RawNifti): Uint8Array {
  const v2 = h.version === 2;
  const hdrSize = v2 ? 540 : 348;
  const ext = h.extension ?? new Uint8Array(0);
  const voxOffset = h.voxOffset ?? hdrSize + 4 + ext.length;
  const out = new Uint8Array(voxOffset + h.data.length);
  const view = new DataView(out.buffer);
  const le = h.littleEndian ?? true;
  const pixdim = h.pixdim ?? [1, 1, 1, 1, 1, 1, 1, 1];
  const srow = h.srow ?? new Array(12).fill(0);
  const quatern = h.quatern ?? [0, 0, 0];
  const qoffset = h.qoffset ?? [0, 0, 0];
  const text = (o: number, s: string) => [...s].forEach((c, i) => (out[o + i] = c.charCodeAt(0)));
  view.setInt32(0, h.sizeofHdr ?? hdrSize, le);
  if (!v2) {
    h.dim.forEach((d, i) => view.setInt16(40 + 2 * i, d, le));
    view.setInt16(70, h.datatype, le);
    view.setInt16(72, h.bitpix, le);
    pixdim.forEach((p, i) => view.setFloat32(76 + 4 * i, p, le));
    view.setFloat32(108, voxOffset, le);
    view.setFloat32(112, h.sclSlope ?? 0, le);
    view.setFloat32(116, h.sclInter ?? 0, le);
    out[123] = h.xyztUnits ?? 2;
    view.setInt16(252, h.qformCode ?? 0, le);
    view.setInt16(254, h.sformCode ?? 0, le);
    quatern.forEach((q, i) => view.setFloat32(256 + 4 * i, q, le));
    qoffset.forEach((q, i) => view.setFloat32(268 + 4 * i, q, le));
    srow.forEach((s, i) => view.setFloat32(280 + 4 * i, s, le));
    text(344, h.magic ?? "n+1\0");
  } else {
    text(4, h.magic ?? "n+2\0\r\n\x1a\n");
    view.setInt16(12, h.datatype, le);
    view.setInt16(14, h.bitpix, le);
    h.dim.forEach((d, i) => view.setBigInt64(16 + 8 * i, BigInt(d), le));
    pixdim.forEach((p, i) => view.setFloat64(104 + 8 * i, p, le));
    view.setBigInt64(168, BigInt(voxOffset), le);
    view.setFloat64(176, h.sclSlope ?? 0, le);
    view.setFloat64(184, h.sclInter ?? 0, le);
    view.setInt32(344, h.qformCode ?? 0, le);
    view.setInt32(348, h.sformCode ?? 0, le);
    quatern.forEach((q, i) => view.setFloat64(352 + 8 * i, q, le));
    qoffset.forEach((q, i) => view.setFloat64(376 + 8 * i, q, le));
    srow.forEach((s, i) => view.setFloat64(400 + 8 * i, s, le));
    view.setInt32(500, h.xyztUnits ?? 2, le);
  }
  if (ext.length) {
    out[hdrSize] = 1; // extension flag
    out.set(ext, hdrSize + 4);
  }
  out.set(h.data, voxOffset);
  return out;
}

/** int16 values as bytes in the chosen byte order. */
export function int16Bytes(values: number[], littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setInt16(2 * i, v, littleEndian));
  return out;
}

/** float32 values as bytes in the chosen byte order. */
export function float32Bytes(values: number[], littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(4 * i, v, littleEndian));
  return out;
}
