/**
 * DICOM RLE Lossless (transfer syntax 1.2.840.10008.1.2.5), decoded per PS3.5 Annex G. No
 * maintained npm package decodes it outside a browser viewer, and the format is small: a frame
 * is one fragment holding a 64-byte header (the number of segments, then up to 15 segment
 * offsets, little-endian uint32) and PackBits-coded segments. Each segment holds one byte plane
 * of the frame, most significant byte first: one segment for 8-bit samples, two for 16-bit,
 * four for 32-bit (one sample per pixel; colour is refused before decoding).
 */

import { DicomInputError } from "./errors.ts";

/**
 * Decodes one RLE frame of `pixels` samples of `bitsAllocated` bits into unsigned words
 * (host order): Uint8Array for 8 bits, Uint16Array for 16, Uint32Array for 32.
 */
export function decodeRleFrame(
  fragment: Uint8Array,
  pixels: number,
  bitsAllocated: 8 | 16 | 32,
): Uint8Array | Uint16Array | Uint32Array {
  const planes = bitsAllocated / 8;
  if (fragment.length < 64) throw new DicomInputError("RLE frame shorter than its 64-byte header");
  const view = new DataView(fragment.buffer, fragment.byteOffset, fragment.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== planes) {
    throw new DicomInputError(
      `RLE frame has ${segments} segment(s) but ${bitsAllocated}-bit grey samples need ${planes}`,
    );
  }
  const offsets = Array.from({ length: segments }, (_, s) => view.getUint32(4 + 4 * s, true));
  const out = bitsAllocated === 8
    ? new Uint8Array(pixels)
    : bitsAllocated === 16
    ? new Uint16Array(pixels)
    : new Uint32Array(pixels);
  const plane = new Uint8Array(pixels);
  for (let s = 0; s < segments; s++) {
    const end = s + 1 < segments ? offsets[s + 1] : fragment.length;
    if (offsets[s] < 64 || end > fragment.length || end < offsets[s]) {
      throw new DicomInputError(`RLE segment ${s + 1} lies outside its frame (corrupt RLE data)`);
    }
    unpackBits(fragment.subarray(offsets[s], end), plane, s + 1);
    // Segment 1 is the most significant byte plane.
    const shift = 8 * (planes - 1 - s);
    // For 32-bit words `<< 24` goes negative in int32; the Uint32Array stores it modulo 2³².
    for (let i = 0; i < pixels; i++) out[i] |= plane[i] << shift;
  }
  return out;
}

/** PackBits: a header byte n, then n+1 literal bytes (n ≥ 0) or one byte repeated 1−n times. */
function unpackBits(src: Uint8Array, dst: Uint8Array, segment: number): void {
  let i = 0;
  let o = 0;
  while (o < dst.length && i < src.length) {
    const n = src[i++];
    if (n < 128) {
      const count = n + 1;
      if (i + count > src.length || o + count > dst.length) break;
      dst.set(src.subarray(i, i + count), o);
      i += count;
      o += count;
    } else if (n > 128) {
      const count = 257 - n;
      if (i >= src.length || o + count > dst.length) break;
      dst.fill(src[i++], o, o + count);
      o += count;
    } // n = 128 (-128): no operation
  }
  if (o !== dst.length) {
    throw new DicomInputError(
      `RLE segment ${segment} decodes to ${o} of ${dst.length} bytes (corrupt or truncated RLE data)`,
    );
  }
}
