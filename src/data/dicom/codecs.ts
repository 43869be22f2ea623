/**
 * Which transfer syntaxes voxseg reads, and which library decodes each — the table the README
 * cites. Native syntaxes are parsed by dcmjs (deflate included); compressed pixel data goes to
 * a codec loaded on first use (dynamic import), so reading an uncompressed series never loads a
 * WebAssembly module. A syntax missing from the table is refused with a message naming it and
 * what is supported.
 *
 * Every decoder returns a frame as unsigned words of BitsAllocated bits, one per pixel, in host
 * order: the bit pattern as stored. Masking to BitsStored and sign extension happen once, in
 * ./pixels.ts, for native and compressed data alike.
 */

import { DicomInputError } from "./errors.ts";
import { decodeRleFrame } from "./rle.ts";

/** Unsigned sample words of one frame: Uint8Array (8-bit), Uint16Array (16), Uint32Array (32). */
export type FrameWords = Uint8Array | Uint16Array | Uint32Array;

/** What a decoder needs to know of the image. */
export interface FrameFormat {
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16 | 32;
  bitsStored: number;
}

/** A transfer syntax voxseg reads. */
export interface TransferSyntaxEntry {
  uid: string;
  name: string;
  /** The library that decodes its pixel data (native: dcmjs parses the data set). */
  library: string;
  /** Absent for native (uncompressed) syntaxes. */
  decode?: (fragment: Uint8Array, format: FrameFormat) => Promise<FrameWords>;
}

const DCMJS = "dcmjs (npm dcmjs)";

/** Transfer syntax UID → name → decoder. */
export const TRANSFER_SYNTAXES: readonly TransferSyntaxEntry[] = [
  { uid: "1.2.840.10008.1.2", name: "Implicit VR Little Endian", library: DCMJS },
  { uid: "1.2.840.10008.1.2.1", name: "Explicit VR Little Endian", library: DCMJS },
  {
    uid: "1.2.840.10008.1.2.1.99",
    name: "Deflated Explicit VR Little Endian",
    library: `${DCMJS}, which inflates the data set`,
  },
  {
    uid: "1.2.840.10008.1.2.2",
    name: "Explicit VR Big Endian (retired)",
    library: `${DCMJS}; voxseg swaps the pixel bytes`,
  },
  {
    uid: "1.2.840.10008.1.2.5",
    name: "RLE Lossless",
    library: "voxseg's own PackBits decoder (PS3.5 Annex G, src/data/dicom/rle.ts)",
    decode: (fragment, f) =>
      Promise.resolve(decodeRleFrame(fragment, f.rows * f.columns, f.bitsAllocated)),
  },
  {
    uid: "1.2.840.10008.1.2.4.57",
    name: "JPEG Lossless, Non-Hierarchical (Process 14)",
    library: "jpeg-lossless-decoder-js",
    decode: decodeJpegLossless,
  },
  {
    uid: "1.2.840.10008.1.2.4.70",
    name: "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1)",
    library: "jpeg-lossless-decoder-js",
    decode: decodeJpegLossless,
  },
  {
    uid: "1.2.840.10008.1.2.4.80",
    name: "JPEG-LS Lossless",
    library: "@cornerstonejs/codec-charls (CharLS, WebAssembly)",
    decode: decodeJpegLs,
  },
  {
    uid: "1.2.840.10008.1.2.4.81",
    name: "JPEG-LS Lossy (Near-Lossless)",
    library: "@cornerstonejs/codec-charls (CharLS, WebAssembly)",
    decode: decodeJpegLs,
  },
  {
    uid: "1.2.840.10008.1.2.4.90",
    name: "JPEG 2000 (Lossless Only)",
    library: "@cornerstonejs/codec-openjpeg (OpenJPEG, WebAssembly)",
    decode: decodeJpeg2000,
  },
  {
    uid: "1.2.840.10008.1.2.4.91",
    name: "JPEG 2000",
    library: "@cornerstonejs/codec-openjpeg (OpenJPEG, WebAssembly)",
    decode: decodeJpeg2000,
  },
];

/** Names of well-known syntaxes voxseg does not decode, for the refusal message. */
const UNSUPPORTED_NAMES: Record<string, string> = {
  "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1, lossy 8-bit)",
  "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4, lossy 12-bit)",
  "1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 (Lossless Only)",
  "1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL (Lossless Only)",
  "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000",
  "1.2.840.10008.1.2.4.100": "MPEG2 video",
  "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 video",
  "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
};

/** The table entry of a syntax; a {@link DicomInputError} naming what is supported if none. */
export function transferSyntax(uid: string, file: string): TransferSyntaxEntry {
  const entry = TRANSFER_SYNTAXES.find((t) => t.uid === uid);
  if (entry) return entry;
  const name = UNSUPPORTED_NAMES[uid] ? ` (${UNSUPPORTED_NAMES[uid]})` : "";
  throw new DicomInputError(
    `${file}: transfer syntax ${uid}${name} is not supported. voxseg reads ` +
      TRANSFER_SYNTAXES.map((t) => t.name).join(", ") +
      ". Decompress the series first, e.g. with dcmtk's `dcmdjpeg in.dcm out.dcm` or GDCM's " +
      "`gdcmconv --raw in.dcm out.dcm`",
  );
}

/** Unsigned words of `bitsAllocated` bits from a decoder's output of `bytesPerSample` bytes. */
function toWords(
  decoded: Uint8Array,
  bytesPerSample: number,
  format: FrameFormat,
  codec: string,
): FrameWords {
  const pixels = format.rows * format.columns;
  if (decoded.byteLength < pixels * bytesPerSample) {
    throw new DicomInputError(
      `${codec} decoded ${decoded.byteLength} bytes for a ${format.columns}×${format.rows} frame ` +
        `of ${bytesPerSample}-byte samples (corrupt compressed data)`,
    );
  }
  // A copy: the codec's buffer is reused (or freed, for WebAssembly memory) after this call.
  const bytes = decoded.slice(0, pixels * bytesPerSample);
  const source = bytesPerSample === 1
    ? bytes
    : bytesPerSample === 2
    ? new Uint16Array(bytes.buffer)
    : new Uint32Array(bytes.buffer);
  if (format.bitsAllocated === 8 * bytesPerSample) return source;
  const out = format.bitsAllocated === 8
    ? new Uint8Array(pixels)
    : format.bitsAllocated === 16
    ? new Uint16Array(pixels)
    : new Uint32Array(pixels);
  out.set(source);
  return out;
}

interface JpegLosslessModule {
  Decoder: new () => {
    decode(buffer: ArrayBuffer, offset: number, length: number): Uint8Array | Uint16Array;
    precision: number;
  };
}

let jpegLossless: Promise<JpegLosslessModule> | undefined;

async function decodeJpegLossless(fragment: Uint8Array, format: FrameFormat): Promise<FrameWords> {
  jpegLossless ??= import("jpeg-lossless-decoder-js") as Promise<JpegLosslessModule>;
  const { Decoder } = await jpegLossless;
  const decoder = new Decoder();
  const input = fragment.slice().buffer;
  const out = decoder.decode(input, 0, input.byteLength);
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  return toWords(bytes, decoder.precision > 8 ? 2 : 1, format, "the JPEG lossless decoder");
}

/** The part of an Emscripten codec module (CharLS, OpenJPEG builds) voxseg uses. */
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number };
  getDecodedBuffer(): Uint8Array;
  delete(): void;
}
type WasmFactory = (options: Record<string, unknown>) => Promise<Record<string, unknown>>;

let charls: Promise<{ JpegLSDecoder: new () => WasmDecoder }> | undefined;
let openjpeg: Promise<{ J2KDecoder: new () => WasmDecoder }> | undefined;

/** Quiet options: the Emscripten builds print progress lines on stdout otherwise. */
const QUIET = { print: () => {}, printErr: () => {} };

async function loadWasm<T>(specifier: Promise<{ default: unknown }>): Promise<T> {
  const factory = (await specifier).default as WasmFactory;
  return await factory(QUIET) as T;
}

async function decodeJpegLs(fragment: Uint8Array, format: FrameFormat): Promise<FrameWords> {
  charls ??= loadWasm(import("@cornerstonejs/codec-charls/decodewasmjs"));
  const { JpegLSDecoder } = await charls;
  return decodeWithWasm(new JpegLSDecoder(), fragment, format, "CharLS (JPEG-LS)");
}

async function decodeJpeg2000(fragment: Uint8Array, format: FrameFormat): Promise<FrameWords> {
  openjpeg ??= loadWasm(import("@cornerstonejs/codec-openjpeg/decodewasmjs"));
  const { J2KDecoder } = await openjpeg;
  return decodeWithWasm(new J2KDecoder(), fragment, format, "OpenJPEG (JPEG 2000)");
}

function decodeWithWasm(
  decoder: WasmDecoder,
  fragment: Uint8Array,
  format: FrameFormat,
  codec: string,
): FrameWords {
  try {
    decoder.getEncodedBuffer(fragment.length).set(fragment);
    try {
      decoder.decode();
    } catch (e) {
      throw new DicomInputError(`${codec} could not decode a frame (${describe(e)})`);
    }
    const info = decoder.getFrameInfo();
    if (info.componentCount !== 1) {
      throw new DicomInputError(`${codec}: a frame has ${info.componentCount} colour components`);
    }
    if (info.width !== format.columns || info.height !== format.rows) {
      throw new DicomInputError(
        `${codec}: a frame is ${info.width}×${info.height} but the header says ` +
          `${format.columns}×${format.rows}`,
      );
    }
    return toWords(decoder.getDecodedBuffer(), info.bitsPerSample > 8 ? 2 : 1, format, codec);
  } finally {
    decoder.delete();
  }
}

/** Emscripten throws numbers (pointers) as often as Errors. */
function describe(e: unknown): string {
  return e instanceof Error ? e.message : `code ${String(e)}`;
}
