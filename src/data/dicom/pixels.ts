/**
 * Pixel data → voxel values. A frame's words (native bytes, or a codec's output) become stored
 * values by BitsStored, HighBit and PixelRepresentation, then modality values (HU for CT) by
 * each frame's RescaleSlope and RescaleIntercept.
 *
 * - Stored values: the BitsStored bits ending at HighBit, sign-extended when
 *   PixelRepresentation is 1 (two's complement); bits above HighBit (overlays, garbage) are
 *   ignored.
 * - PixelPaddingValue (and PixelPaddingRangeLimit) mark voxels outside the scanned field. They
 *   become the lowest value of the series' real voxels — for CT at most −1024 HU (air) — so the
 *   arbitrary padding code (often −2000, −3024 or 63536) neither reads as tissue nor stretches
 *   the intensity range.
 * - Output: int16 when every frame's slope and intercept are integers and every value fits
 *   int16, else float32.
 */

import { DicomInputError } from "./errors.ts";
import type { FrameFormat, FrameWords, TransferSyntaxEntry } from "./codecs.ts";
import { type DicomInstance, num, text } from "./instance.ts";
import { HOST_LITTLE_ENDIAN } from "../endian.ts";
import { concatBytes } from "../../base/bytes.ts";

/** How an instance stores its pixels (Image Pixel module). */
export interface PixelFormat extends FrameFormat {
  highBit: number;
  /** 1: two's complement signed stored values. */
  pixelRepresentation: 0 | 1;
  /** PixelPaddingValue and PixelPaddingRangeLimit as stored values (limit = value if absent). */
  padding?: [number, number];
}

const BIG_ENDIAN = "1.2.840.10008.1.2.2";

/** The pixel format of an instance; a {@link DicomInputError} for what voxseg cannot read. */
export function pixelFormat(instance: DicomInstance): PixelFormat {
  const ds = instance.dataset;
  const name = instance.name;
  if (ds.PixelData === undefined) {
    const other = ds.FloatPixelData !== undefined || ds.DoubleFloatPixelData !== undefined;
    throw new DicomInputError(
      other
        ? `${name}: float pixel data (a parametric map) is not supported; voxseg reads images`
        : `${name}: no pixel data — not an image (a report, structure set or presentation state?)`,
    );
  }
  const samples = num(ds, "SamplesPerPixel") ?? 1;
  const photometric = text(ds, "PhotometricInterpretation").toUpperCase();
  if (samples !== 1 || (photometric !== "" && !photometric.startsWith("MONOCHROME"))) {
    throw new DicomInputError(
      `${name}: colour image (SamplesPerPixel ${samples}, PhotometricInterpretation ` +
        `${photometric || "absent"}); voxseg segments greyscale CT/MR images (MONOCHROME1/2)`,
    );
  }
  const rows = num(ds, "Rows") ?? 0;
  const columns = num(ds, "Columns") ?? 0;
  const bitsAllocated = num(ds, "BitsAllocated") ?? 0;
  const bitsStored = num(ds, "BitsStored") ?? bitsAllocated;
  const highBit = num(ds, "HighBit") ?? bitsStored - 1;
  const pixelRepresentation = num(ds, "PixelRepresentation") ?? 0;
  if (!(rows > 0 && columns > 0)) throw new DicomInputError(`${name}: Rows/Columns missing`);
  if (bitsAllocated !== 8 && bitsAllocated !== 16 && bitsAllocated !== 32) {
    throw new DicomInputError(
      `${name}: BitsAllocated ${bitsAllocated} is not supported (8, 16 or 32 bit greyscale)`,
    );
  }
  if (
    bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 ||
    highBit >= bitsAllocated || (pixelRepresentation !== 0 && pixelRepresentation !== 1)
  ) {
    throw new DicomInputError(
      `${name}: inconsistent Image Pixel module (BitsAllocated ${bitsAllocated}, BitsStored ` +
        `${bitsStored}, HighBit ${highBit}, PixelRepresentation ${pixelRepresentation})`,
    );
  }
  const format: PixelFormat = {
    rows,
    columns,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation: pixelRepresentation as 0 | 1,
  };
  const pad = num(ds, "PixelPaddingValue");
  if (pad !== undefined) {
    // US or SS by PixelRepresentation; implicit VR files may read an SS value as US, so both
    // go through the same bits → stored value path as the pixels.
    const limit = num(ds, "PixelPaddingRangeLimit") ?? pad;
    const a = storedValue(pad, format);
    const b = storedValue(limit, format);
    format.padding = [Math.min(a, b), Math.max(a, b)];
  }
  return format;
}

/** The stored value a word's bits represent (mask to BitsStored at HighBit, sign-extend). */
export function storedValue(word: number, f: PixelFormat): number {
  const shift = f.highBit + 1 - f.bitsStored;
  const range = 2 ** f.bitsStored;
  let v = Math.floor(((word >>> 0) % 2 ** f.bitsAllocated) / 2 ** shift) % range;
  if (f.pixelRepresentation === 1 && v >= range / 2) v -= range;
  return v;
}

/**
 * The words of frame `frameIndex` of an instance: native pixel data sliced (and byte-swapped
 * for big endian), or the frame's fragment decoded by the syntax's codec.
 */
export async function frameWords(
  instance: DicomInstance,
  frameIndex: number,
  frameCount: number,
  format: PixelFormat,
  syntax: TransferSyntaxEntry,
  label: string,
): Promise<FrameWords> {
  const chunks = pixelChunks(instance);
  if (syntax.decode) {
    // dcmjs splits encapsulated pixel data into one buffer per frame (by the offset table);
    // a one-frame image may come as several fragments, which form one codestream.
    const fragment = chunks.length === frameCount
      ? chunks[frameIndex]
      : frameCount === 1
      ? concatBytes(chunks)
      : undefined;
    if (fragment === undefined) {
      throw new DicomInputError(
        `${label}: ${chunks.length} compressed fragments for ${frameCount} frames and no ` +
          "offset table to tell them apart; decompress the file first (dcmdjpeg, gdcmconv --raw)",
      );
    }
    try {
      return await syntax.decode(fragment, format);
    } catch (e) {
      if (e instanceof DicomInputError) throw new DicomInputError(`${label}: ${e.message}`);
      throw new DicomInputError(
        `${label}: could not decode ${syntax.name} pixel data (${(e as Error).message ?? e}) — ` +
          "the compressed data is corrupt or truncated",
      );
    }
  }
  const data = chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  const bytesPerWord = format.bitsAllocated / 8;
  const frameBytes = format.rows * format.columns * bytesPerWord;
  const start = frameIndex * frameBytes;
  if (start + frameBytes > data.length) {
    throw new DicomInputError(
      `${label}: pixel data holds ${data.length} bytes but ${frameCount} frame(s) of ` +
        `${format.columns}×${format.rows} ${format.bitsAllocated}-bit pixels need ` +
        `${frameCount * frameBytes} — the file is truncated; copy it again from the source`,
    );
  }
  const bytes = data.slice(start, start + frameBytes);
  // Typed arrays read in host order; swap when the file's byte order differs.
  const fileLittleEndian = instance.transferSyntaxUid !== BIG_ENDIAN;
  if (fileLittleEndian !== HOST_LITTLE_ENDIAN && bytesPerWord > 1) swapBytes(bytes, bytesPerWord);
  return bytesPerWord === 1
    ? bytes
    : bytesPerWord === 2
    ? new Uint16Array(bytes.buffer)
    : new Uint32Array(bytes.buffer);
}

/** PixelData as dcmjs gives it (one ArrayBuffer per fragment or frame), as byte views. */
function pixelChunks(instance: DicomInstance): Uint8Array[] {
  const value = instance.dataset.PixelData;
  const list = Array.isArray(value) ? value : [value];
  return list.map((c) =>
    c instanceof ArrayBuffer
      ? new Uint8Array(c)
      : ArrayBuffer.isView(c)
      ? new Uint8Array(c.buffer, c.byteOffset, c.byteLength)
      : new Uint8Array(0)
  );
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i + width <= bytes.length; i += width) {
    bytes.subarray(i, i + width).reverse();
  }
}

/** One decoded frame and how to turn its words into values. */
export interface DecodedFrame {
  words: FrameWords;
  format: PixelFormat;
  slope: number;
  intercept: number;
}

/**
 * The voxels of decoded frames (z order, each rows×columns, x fastest) as modality values:
 * int16 when exact, else float32 (see the module comment for padding).
 */
export function frameValues(
  frames: readonly DecodedFrame[],
  modality: string,
): Int16Array | Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  let anyPadding = false;
  const tables = new Map<string, Int32Array | undefined>();
  const stored = frames.map((f) => {
    const key = JSON.stringify(f.format);
    if (!tables.has(key)) tables.set(key, storedTable(f.format));
    return tables.get(key);
  });
  for (const [z, f] of frames.entries()) {
    const [smin, smax, padded] = storedRange(f, stored[z]);
    anyPadding ||= padded;
    if (smin > smax) continue; // every voxel of the frame is padding
    const a = smin * f.slope + f.intercept;
    const b = smax * f.slope + f.intercept;
    lo = Math.min(lo, a, b);
    hi = Math.max(hi, a, b);
  }
  const isCt = modality.toUpperCase() === "CT";
  const fill = lo === Infinity ? (isCt ? -1024 : 0) : isCt ? Math.min(lo, -1024) : lo;
  if (anyPadding) [lo, hi] = [Math.min(lo, fill), Math.max(hi, fill)];
  const exact = frames.every((f) => Number.isInteger(f.slope) && Number.isInteger(f.intercept)) &&
    lo >= -32768 && hi <= 32767;
  const plane = frames.length ? frames[0].format.rows * frames[0].format.columns : 0;
  const out = exact
    ? new Int16Array(plane * frames.length)
    : new Float32Array(plane * frames.length);
  for (const [z, f] of frames.entries()) {
    const table = stored[z];
    const [p0, p1] = f.format.padding ?? [Infinity, -Infinity];
    const base = z * plane;
    for (let i = 0; i < plane; i++) {
      const s = table ? table[f.words[i]] : storedValue(f.words[i], f.format);
      out[base + i] = s >= p0 && s <= p1 ? fill : s * f.slope + f.intercept;
    }
  }
  return out;
}

/** Stored value of every 8- or 16-bit word, so the voxel loop is a lookup. */
function storedTable(f: PixelFormat): Int32Array | undefined {
  if (f.bitsAllocated > 16) return undefined;
  const table = new Int32Array(2 ** f.bitsAllocated);
  for (let w = 0; w < table.length; w++) table[w] = storedValue(w, f);
  return table;
}

/** Smallest and largest stored value of a frame's non-padding voxels; whether any is padding. */
function storedRange(f: DecodedFrame, table?: Int32Array): [number, number, boolean] {
  const [p0, p1] = f.format.padding ?? [Infinity, -Infinity];
  let min = Infinity;
  let max = -Infinity;
  let padded = false;
  for (let i = 0; i < f.words.length; i++) {
    const s = table ? table[f.words[i]] : storedValue(f.words[i], f.format);
    if (s >= p0 && s <= p1) padded = true;
    else {
      if (s < min) min = s;
      if (s > max) max = s;
    }
  }
  return [min, max, padded];
}
