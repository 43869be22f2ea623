/**
 * The safetensors format, read and written on the host: the weight files voxseg shares with
 * PyTorch (`safetensors.torch.load_file`), MONAI and Hugging Face tools.
 *
 * Layout (all little-endian):
 *
 *   [8 bytes: N, u64]  [N bytes: JSON header, UTF-8, padded with spaces to a multiple of 8]
 *   [data: each tensor's bytes, C order, back to back]
 *
 * The header maps each tensor name to `{"dtype","shape","data_offsets":[begin,end]}`, offsets
 * relative to the start of the data section, plus an optional `"__metadata__"` string→string
 * map. voxseg writes F32 only, tensors in name order (the reference writer's order for a single
 * dtype), `__metadata__` first with its keys sorted, so equal inputs give equal bytes. It reads
 * every numeric dtype below into a Float32Array.
 */

/** A tensor on the host: C-order (last axis fastest) f32 values and their shape. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** A tensor read from a file, with the dtype it was stored as before conversion to f32. */
export interface DecodedTensor extends HostTensor {
  dtype: SafetensorsDtype;
}

/** The dtypes {@link decodeSafetensors} converts to f32. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of each readable dtype. */
const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Headers above this size are refused, as the reference implementation does (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** A malformed safetensors file or an input that cannot be written as one. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const METADATA_KEY = "__metadata__";
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Compares strings by their UTF-8 bytes (Rust's `String` order, which the reference uses). */
function compareUtf8(a: string, b: string): number {
  const enc = new TextEncoder();
  const x = enc.encode(a), y = enc.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Serialises f32 tensors (and optional string metadata) to safetensors bytes.
 *
 * Throws {@link SafetensorsError} when a shape does not match its data length, a shape entry is
 * not a non-negative integer, a name is empty or `__metadata__`, or a metadata value is not a
 * string.
 *
 * @example
 * const bytes = encodeSafetensors(
 *   { "head.bias": { shape: [3], data: new Float32Array([0, 0.5, -1]) } },
 *   { format: "pt" },
 * );
 */
export function encodeSafetensors(
  tensors: Map<string, HostTensor> | Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  entries.sort(([a], [b]) => compareUtf8(a, b));

  // Header keys in insertion order: __metadata__ first, then tensors in data order.
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const sorted: Record<string, string> = {};
    for (const key of Object.keys(metadata).sort(compareUtf8)) {
      const value = metadata[key];
      if (typeof value !== "string") {
        throw new SafetensorsError(
          `metadata value for "${key}" must be a string, got ${typeof value}`,
        );
      }
      sorted[key] = value;
    }
    header[METADATA_KEY] = sorted;
  }
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "" || name === METADATA_KEY) {
      throw new SafetensorsError(`invalid tensor name ${JSON.stringify(name)}`);
    }
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor "${name}": shape [${t.shape}] must be integers ≥ 0`);
    }
    if (!(t.data instanceof Float32Array)) {
      throw new SafetensorsError(`tensor "${name}": data must be a Float32Array`);
    }
    const n = elementCount(t.shape);
    if (n !== t.data.length) {
      throw new SafetensorsError(
        `tensor "${name}": shape [${t.shape}] holds ${n} values but data has ${t.data.length}`,
      );
    }
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  if (headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`header of ${headerLength} bytes exceeds ${MAX_HEADER_BYTES}`);
  }
  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength); // pad with spaces: data starts 8-aligned
  let at = 8 + headerLength;
  for (const [, t] of entries) {
    if (LITTLE_ENDIAN_HOST) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    } else {
      for (let i = 0; i < t.data.length; i++) view.setFloat32(at + 4 * i, t.data[i], true);
    }
    at += t.data.byteLength;
  }
  return out;
}

/** IEEE 754 half (binary16) bits to a number. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero or subnormal
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Converts one tensor's little-endian bytes to f32. */
function toFloat32(dtype: SafetensorsDtype, bytes: Uint8Array, n: number): Float32Array {
  if (dtype === "F32" && LITTLE_ENDIAN_HOST) {
    return new Float32Array(bytes.slice().buffer); // a copy: the source may be unaligned
  }
  const out = new Float32Array(n);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const scratch = new DataView(new ArrayBuffer(4));
  const read: Record<SafetensorsDtype, (i: number) => number> = {
    F64: (i) => v.getFloat64(8 * i, true),
    F32: (i) => v.getFloat32(4 * i, true),
    F16: (i) => halfToNumber(v.getUint16(2 * i, true)),
    // bfloat16 is the top half of an f32.
    BF16: (i) => {
      scratch.setUint32(0, (v.getUint16(2 * i, true) << 16) >>> 0);
      return scratch.getFloat32(0);
    },
    I64: (i) => Number(v.getBigInt64(8 * i, true)),
    I32: (i) => v.getInt32(4 * i, true),
    I16: (i) => v.getInt16(2 * i, true),
    I8: (i) => v.getInt8(i),
    U64: (i) => Number(v.getBigUint64(8 * i, true)),
    U32: (i) => v.getUint32(4 * i, true),
    U16: (i) => v.getUint16(2 * i, true),
    U8: (i) => v.getUint8(i),
    BOOL: (i) => (v.getUint8(i) ? 1 : 0),
  };
  const get = read[dtype];
  for (let i = 0; i < n; i++) out[i] = get(i);
  return out;
}

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(name: string, raw: unknown): HeaderEntry {
  const where = `tensor "${name}"`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SafetensorsError(`${where}: header entry must be an object`);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
    throw new SafetensorsError(
      `${where}: unknown or unsupported dtype ${JSON.stringify(dtype)} ` +
        `(readable: ${Object.keys(DTYPE_BYTES).join(", ")})`,
    );
  }
  if (
    !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new SafetensorsError(`${where}: shape ${JSON.stringify(shape)} is not a list of sizes`);
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]
  ) {
    throw new SafetensorsError(
      `${where}: data_offsets ${JSON.stringify(offsets)} must be [begin, end], 0 ≤ begin ≤ end`,
    );
  }
  const entry: HeaderEntry = {
    name,
    dtype: dtype as SafetensorsDtype,
    shape: shape as number[],
    begin: offsets[0],
    end: offsets[1],
  };
  const expected = elementCount(entry.shape) * DTYPE_BYTES[entry.dtype];
  if (entry.end - entry.begin !== expected) {
    throw new SafetensorsError(
      `${where}: ${dtype} shape [${shape}] needs ${expected} bytes but data_offsets ` +
        `[${entry.begin}, ${entry.end}] span ${entry.end - entry.begin}`,
    );
  }
  return entry;
}

/**
 * Parses safetensors bytes; every tensor comes back as f32 (64-bit integers beyond 2^24 and
 * F64 values lose precision, as they must). Tensors are listed in file order.
 *
 * Validates like the reference reader: the header length fits the file and
 * {@link MAX_HEADER_BYTES}; the header is a JSON object whose metadata values are strings; each
 * dtype is known; offsets lie inside the data section, match shape × dtype size, do not overlap
 * and leave no gaps; the data section ends where the last tensor does. Failures throw
 * {@link SafetensorsError} naming the tensor and the numbers involved.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
): { tensors: Map<string, DecodedTensor>; metadata: Record<string, string> } {
  if (bytes.length < 8) {
    throw new SafetensorsError(`truncated file: ${bytes.length} bytes, the header length needs 8`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const declared = view.getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      `header too large: ${declared} bytes declared, at most ${MAX_HEADER_BYTES} are accepted`,
    );
  }
  const headerLength = Number(declared);
  if (8 + headerLength > bytes.length) {
    throw new SafetensorsError(
      `truncated file: header declares ${headerLength} bytes but only ${
        bytes.length - 8
      } follow the length`,
    );
  }
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + headerLength),
    );
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsError("header must be a JSON object");
  }

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === METADATA_KEY) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new SafetensorsError("__metadata__ must be an object of strings");
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new SafetensorsError(`__metadata__["${k}"] must be a string, got ${typeof v}`);
        }
        metadata[k] = v;
      }
    } else {
      entries.push(parseEntry(key, value));
    }
  }

  const data = bytes.subarray(8 + headerLength);
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous = "";
  for (const e of entries) {
    if (e.end > data.length) {
      throw new SafetensorsError(
        `truncated file or offsets out of range: tensor "${e.name}" ends at data byte ${e.end} ` +
          `but the data section has ${data.length} bytes`,
      );
    }
    if (e.begin < cursor) {
      throw new SafetensorsError(
        `overlapping tensors: "${e.name}" [${e.begin}, ${e.end}] starts before "${previous}" ` +
          `ends at ${cursor}`,
      );
    }
    if (e.begin > cursor) {
      throw new SafetensorsError(
        `gap in data: bytes [${cursor}, ${e.begin}) before tensor "${e.name}" belong to no tensor`,
      );
    }
    cursor = e.end;
    previous = e.name;
  }
  if (cursor !== data.length) {
    throw new SafetensorsError(
      `data section has ${data.length} bytes but the tensors cover ${cursor}`,
    );
  }

  const tensors = new Map<string, DecodedTensor>();
  for (const e of entries) {
    const n = elementCount(e.shape);
    tensors.set(e.name, {
      dtype: e.dtype,
      shape: e.shape,
      data: toFloat32(e.dtype, data.subarray(e.begin, e.end), n),
    });
  }
  return { tensors, metadata };
}
