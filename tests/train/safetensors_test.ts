import { assertEquals, assertThrows } from "./assert.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  MAX_HEADER_BYTES,
  SafetensorsError,
} from "../../src/nn/safetensors.ts";

const ascii = (s: string) => [...new TextEncoder().encode(s)];
const u64 = (
  n: number,
) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff, 0, 0, 0, 0];

/** A file from a literal header (as given, padded with spaces to 8) and data bytes. */
function rawFile(header: string, data: number[] = []): Uint8Array {
  const h = ascii(header);
  while (h.length % 8) h.push(0x20);
  return new Uint8Array([...u64(h.length), ...h, ...data]);
}

// Python's safetensors is not importable on this machine (neither Debian's python3 nor the
// first on PATH has it), so interop is pinned by byte layouts computed by hand from the
// format's definition, using the examples of the reference implementation's own tests.

Deno.test("encode: one F32 tensor [1,2,3] is laid out byte for byte as the spec says", () => {
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  const out = encodeSafetensors({ "attn.0": { shape: [1, 2, 3], data } });
  const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  assertEquals(header.length, 64); // a multiple of 8 already: no padding
  // f32 little-endian: 1 = 3F800000, 2 = 40000000, 3 = 40400000, 4 = 40800000, 5 = 40A00000.
  const floats = [
    0,
    0,
    0,
    0,
    0,
    0,
    128,
    63,
    0,
    0,
    0,
    64,
    0,
    0,
    64,
    64,
    0,
    0,
    128,
    64,
    0,
    0,
    160,
    64,
  ];
  assertEquals([...out], [64, 0, 0, 0, 0, 0, 0, 0, ...ascii(header), ...floats]);
});

Deno.test("encode: header padded with spaces to 8 bytes so the data starts aligned", () => {
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  const out = encodeSafetensors({ attn0: { shape: [1, 1, 2, 3], data } });
  const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
  assertEquals(header.length, 65); // → 72 with 7 spaces
  assertEquals([...out.subarray(0, 8)], u64(72));
  assertEquals([...out.subarray(8, 80)], [...ascii(header), 32, 32, 32, 32, 32, 32, 32]);
  assertEquals(out.length, 8 + 72 + 24);
  assertEquals(new Float32Array(out.slice(80).buffer), data);
});

Deno.test("encode: no tensors; metadata only; empty metadata omitted", () => {
  assertEquals([...encodeSafetensors({})], [
    8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    123,
    125,
    32,
    32,
    32,
    32,
    32,
    32,
  ]);
  assertEquals(encodeSafetensors(new Map(), {}), encodeSafetensors({}));
  const header = '{"__metadata__":{"framework":"pt"}}'; // 35 bytes → 40
  assertEquals([...encodeSafetensors({}, { framework: "pt" })], [
    ...u64(40),
    ...ascii(header),
    32,
    32,
    32,
    32,
    32,
  ]);
});

Deno.test("encode: tensors in byte-wise name order, metadata first with sorted keys", () => {
  const t = (v: number) => ({ shape: [1], data: new Float32Array([v]) });
  const out = encodeSafetensors(new Map([["b", t(3)], ["a", t(2)], ["B", t(1)]]), {
    z: "1",
    a: "2",
  });
  const n = Number(new DataView(out.buffer).getBigUint64(0, true));
  const text = new TextDecoder().decode(out.subarray(8, 8 + n)).trimEnd();
  assertEquals(
    text,
    '{"__metadata__":{"a":"2","z":"1"},' +
      '"B":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},' +
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
  );
  assertEquals([...new Float32Array(out.slice(8 + n).buffer)], [1, 2, 3]);
});

Deno.test("round trip: shapes incl. scalar and empty, metadata, Map and Record inputs", () => {
  const weights = new Map([
    ["enc.0.conv1.weight", {
      shape: [2, 1, 3, 3, 3],
      data: Float32Array.from({ length: 54 }, (_, i) => i / 7 - 3),
    }],
    ["enc.0.conv1.bias", { shape: [2], data: new Float32Array([-0.5, 1e-30]) }],
    ["scalar", { shape: [], data: new Float32Array([42]) }],
    ["empty", { shape: [0, 3], data: new Float32Array(0) }],
  ]);
  const meta = { "voxseg.format": "1", note: 'quotes " and ünïcödé \n' };
  const { tensors, metadata } = decodeSafetensors(encodeSafetensors(weights, meta));
  assertEquals(metadata, meta);
  assertEquals([...tensors.keys()], ["empty", "enc.0.conv1.bias", "enc.0.conv1.weight", "scalar"]);
  for (const [name, t] of weights) {
    assertEquals(tensors.get(name)!.shape, t.shape, name);
    assertEquals(tensors.get(name)!.data, t.data, name);
    assertEquals(tensors.get(name)!.dtype, "F32");
  }
  const fromRecord = encodeSafetensors(Object.fromEntries(weights), meta);
  assertEquals(fromRecord, encodeSafetensors(weights, meta));
});

Deno.test("decode: the reference I32 example (zeros [2,2]) and a buffer at an odd offset", () => {
  const header = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
  assertEquals(header.length, 60); // the reference writes N = 60 ('<') without padding
  const file = new Uint8Array([...u64(60), ...ascii(header), ...new Array(16).fill(0)]);
  const { tensors } = decodeSafetensors(file);
  assertEquals(tensors.get("test"), { dtype: "I32", shape: [2, 2], data: new Float32Array(4) });

  const f32 = encodeSafetensors({ x: { shape: [3], data: new Float32Array([1.5, -2, 3]) } });
  const shifted = new Uint8Array(f32.length + 1);
  shifted.set(f32, 1);
  assertEquals(
    decodeSafetensors(shifted.subarray(1)).tensors.get("x")!.data,
    new Float32Array([1.5, -2, 3]),
  );
});

Deno.test("decode: F16, BF16, F64, I64, I32, U8, I8, BOOL convert to f32", () => {
  const f64 = new DataView(new ArrayBuffer(16));
  f64.setFloat64(0, 0.1, true);
  f64.setFloat64(8, -1e300, true);
  const data = [
    // F16 [6]: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf, NaN
    0x00,
    0x3c,
    0x00,
    0xc0,
    0xff,
    0x7b,
    0x01,
    0x00,
    0x00,
    0x7c,
    0x00,
    0x7e,
    // BF16 [2]: 1 (3F80), -3.5 (C060)
    0x80,
    0x3f,
    0x60,
    0xc0,
    // F64 [2]
    ...new Uint8Array(f64.buffer),
    // I64 [2]: -2, 2^40
    0xfe,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    // I32 [1]: -7
    0xf9,
    0xff,
    0xff,
    0xff,
    // U8 [2]: 0, 255; I8 [1]: -128; BOOL [2]
    0,
    255,
    0x80,
    1,
    0,
  ];
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [6], data_offsets: [0, 12] },
    bf: { dtype: "BF16", shape: [2], data_offsets: [12, 16] },
    d: { dtype: "F64", shape: [2], data_offsets: [16, 32] },
    l: { dtype: "I64", shape: [2], data_offsets: [32, 48] },
    i: { dtype: "I32", shape: [1], data_offsets: [48, 52] },
    u: { dtype: "U8", shape: [2], data_offsets: [52, 54] },
    s: { dtype: "I8", shape: [1], data_offsets: [54, 55] },
    b: { dtype: "BOOL", shape: [2], data_offsets: [55, 57] },
  });
  const { tensors } = decodeSafetensors(rawFile(header, data));
  const values = (k: string) => [...tensors.get(k)!.data];
  assertEquals(values("h"), [1, -2, 65504, 2 ** -24, Infinity, NaN]);
  assertEquals(values("bf"), [1, -3.5]);
  assertEquals(values("d"), [Math.fround(0.1), -Infinity]); // -1e300 overflows f32
  assertEquals(values("l"), [-2, 2 ** 40]);
  assertEquals(values("i"), [-7]);
  assertEquals(values("u"), [0, 255]);
  assertEquals(values("s"), [-128]);
  assertEquals(values("b"), [1, 0]);
  assertEquals(tensors.get("h")!.dtype, "F16");
  assertEquals([...tensors.keys()], ["h", "bf", "d", "l", "i", "u", "s", "b"]); // file order
});

const entry = (dtype: string, shape: number[], offsets: number[]) => ({
  dtype,
  shape,
  data_offsets: offsets,
});

Deno.test("decode: malformed files give errors that say what is wrong", () => {
  const bad = (bytes: Uint8Array, message: string) =>
    assertThrows(() => decodeSafetensors(bytes), SafetensorsError, message);
  bad(new Uint8Array(5), "truncated file: 5 bytes");
  bad(new Uint8Array([...u64(64), ...ascii("{}")]), "header declares 64 bytes but only 2");
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
  bad(huge, "header too large");
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  bad(huge, "header too large");
  bad(rawFile("{not json"), "not valid UTF-8 JSON");
  bad(rawFile("[1,2]"), "must be a JSON object");
  bad(new Uint8Array([...u64(8), 0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d, 0x20]), "UTF-8");
  const one = (e: unknown, data: number[] = []) => rawFile(JSON.stringify({ w: e }), data);
  bad(
    one(entry("F8_E4M3", [1], [0, 1]), [0]),
    'tensor "w": unknown or unsupported dtype "F8_E4M3"',
  );
  bad(one(entry("Q4", [1], [0, 1]), [0]), "unknown or unsupported dtype");
  bad(
    one(entry("F32", [2], [0, 8]), [0, 0, 0, 0]),
    'tensor "w" ends at data byte 8 but the data section has 4',
  );
  bad(one(entry("F32", [2], [0, 4]), [0, 0, 0, 0]), "F32 shape [2] needs 8 bytes");
  bad(one(entry("F32", [-1], [0, 4])), "is not a list of sizes");
  bad(one(entry("F32", [1], [4, 0])), "must be [begin, end]");
  bad(one({ dtype: "F32", shape: [1] }), "data_offsets undefined");
  bad(
    one(entry("F32", [1], [0, 4]), [0, 0, 0, 0, 9]),
    "data section has 5 bytes but the tensors cover 4",
  );
  const two = (a: number[], b: number[], n: number) =>
    rawFile(
      JSON.stringify({ a: entry("F32", [1], a), b: entry("F32", [1], b) }),
      new Array(n).fill(0),
    );
  bad(two([0, 4], [2, 6], 8), 'overlapping tensors: "b" [2, 6] starts before "a" ends at 4');
  bad(two([0, 4], [0, 4], 4), "overlapping tensors");
  bad(two([0, 4], [8, 12], 12), 'gap in data: bytes [4, 8) before tensor "b"');
  bad(rawFile('{"__metadata__":{"k":1}}'), '__metadata__["k"] must be a string');
  bad(rawFile('{"__metadata__":[]}'), "__metadata__ must be an object");
});

Deno.test("encode: refuses shapes that disagree with the data and reserved names", () => {
  const f = (n: number) => new Float32Array(n);
  assertThrows(
    () => encodeSafetensors({ w: { shape: [2, 3], data: f(5) } }),
    SafetensorsError,
    'tensor "w": shape [2,3] holds 6 values but data has 5',
  );
  assertThrows(
    () => encodeSafetensors({ w: { shape: [1.5], data: f(1) } }),
    SafetensorsError,
    "integers",
  );
  assertThrows(
    () => encodeSafetensors({ __metadata__: { shape: [1], data: f(1) } }),
    SafetensorsError,
    "invalid tensor name",
  );
  assertThrows(
    () => encodeSafetensors({}, { k: 3 as unknown as string }),
    SafetensorsError,
    'metadata value for "k" must be a string',
  );
});
