/**
 * A seeded corpus of malformed (and a few valid but odd) request bodies for every route that
 * reads a body: the synchronous predict (NIfTI), the job routes (JSON) and resume. The same
 * seed gives the same bodies, so a failure found in CI replays here.
 *
 * NIfTI cases start from a valid 8×16×16 int16 volume and break one thing: a header field
 * (sizeof_hdr, dim, datatype, bitpix, vox_offset, scl_slope, pixdim, magic) set to an edge or
 * absurd value, random header bytes flipped, the file or its gzip cut short or corrupted, gzip
 * bombs (a small gzip expanding to up to 1 GiB, or a header claiming many GiB), random bytes,
 * empty bodies, wrong content types and Content-Length lies (sent over a raw socket); and last a
 * burst of large gzipped volumes that only a few at a time fit the server's memory budget.
 */

import { gzip } from "../../../src/data/gzip.ts";
import { encodeNifti } from "../../../src/data/nifti.ts";
import { Random } from "../../../src/base/random.ts";
import type { Shape3 } from "../../../src/data/volume.ts";
import { buildNifti, int16Bytes } from "../../data/nifti_builder.ts";
import { gzipWithZeros } from "../../fixtures/gzip_bomb.ts";

export type CorpusRoute = "predict" | "train" | "predictJob" | "resume";

export interface CorpusCase {
  /** The family it belongs to, for the summary: "dim", "gzip-bomb", "json-truncated", … */
  kind: string;
  route: CorpusRoute;
  body: Uint8Array<ArrayBuffer>;
  /** Content-Type to send; none when undefined. */
  contentType?: string;
  /**
   * Sent over a raw socket declaring this Content-Length instead of the true one (a lie), then
   * the sending side closed.
   */
  declaredLength?: string;
  /**
   * Sent chunked (no Content-Length): the first KiB, then a pause of this many ms, then the
   * rest — a slow upload that holds its memory share meanwhile.
   */
  stallMs?: number;
  /** A valid volume: the server should answer 200 with its label map (or 503 when busy). */
  valid?: boolean;
}

const MiB = 2 ** 20;
const NIFTI_TYPES = ["application/octet-stream", "application/gzip"];

/** A valid int16 NIfTI-1 volume of `shape` (z, y, x) with CT-like values. */
export function validNifti(shape: Shape3 = [8, 16, 16], seed = 1): Uint8Array<ArrayBuffer> {
  const random = new Random(seed);
  const data = Int16Array.from(
    { length: shape[0] * shape[1] * shape[2] },
    () => random.int(-1000, 400),
  );
  const volume = { shape, spacingMm: [2.5, 0.8, 0.8] as Shape3, affine: identity(), data };
  return encodeNifti(volume) as Uint8Array<ArrayBuffer>;
}

function identity(): number[] {
  return [0.8, 0, 0, 0, 0, 0.8, 0, 0, 0, 0, 2.5, 0, 0, 0, 0, 1];
}

/** One header field of a little-endian NIfTI-1 header, and how to write it. */
interface Field {
  name: string;
  offset: number;
  kind: "i16" | "i32" | "f32" | "magic";
}

const FIELDS: Field[] = [
  { name: "sizeof_hdr", offset: 0, kind: "i32" },
  ...Array.from(
    { length: 8 },
    (_, i) => ({ name: `dim`, offset: 40 + 2 * i, kind: "i16" as const }),
  ),
  { name: "datatype", offset: 70, kind: "i16" },
  { name: "bitpix", offset: 72, kind: "i16" },
  { name: "vox_offset", offset: 108, kind: "f32" },
  { name: "scl_slope", offset: 112, kind: "f32" },
  { name: "scl_inter", offset: 116, kind: "f32" },
  { name: "pixdim", offset: 80, kind: "f32" },
  { name: "magic", offset: 344, kind: "magic" },
];
/**
 * Structural fields are drawn more often than those a reader may ignore or that leave a valid
 * volume (bitpix, dim[4..7], scaling, pixdim), so most bodies are refused before the GPU.
 */
const FIELD_WEIGHTS = [3, 2, 4, 4, 4, 1, 0.5, 0.5, 0.5, 4, 1, 4, 0.5, 0.5, 0.5, 2];

const INTS = [0, -1, 1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 512, 1024, 2048, 32767, -32768];
const INT32S = [0, -1, 347, 349, 540, 0x5c010000, 2 ** 31 - 1, -(2 ** 31), 348 * 2];
const FLOATS = [
  0,
  -0,
  -1,
  NaN,
  Infinity,
  -Infinity,
  1e-45,
  1e30,
  3.4e38,
  351,
  352.5,
  353,
  356,
  2 ** 31,
  -352,
];
const MAGICS = ["n+2\0", "ni1\0", "\0\0\0\0", "N+1\0", "n+1!", "ni2\0", "xyz\0"];

function pick<T>(random: Random, items: readonly T[]): T {
  return items[random.int(0, items.length)];
}

function pickWeighted(random: Random, weights: number[]): number {
  let r = random.uniform(0, weights.reduce((a, b) => a + b, 0));
  for (let i = 0; i < weights.length; i++) if ((r -= weights[i]) < 0) return i;
  return weights.length - 1;
}

/** A copy of `base` with one header field set to an edge or absurd value; the field's name. */
function mutateField(base: Uint8Array, random: Random): [Uint8Array<ArrayBuffer>, string] {
  const out = base.slice();
  const view = new DataView(out.buffer);
  const field = FIELDS[pickWeighted(random, FIELD_WEIGHTS)];
  switch (field.kind) {
    case "i16":
      view.setInt16(
        field.offset,
        random.next() < 0.8 ? pick(random, INTS) : random.int(-32768, 32768),
        true,
      );
      break;
    case "i32":
      view.setInt32(field.offset, pick(random, INT32S), true);
      break;
    case "f32":
      view.setFloat32(
        field.offset,
        random.next() < 0.8 ? pick(random, FLOATS) : random.uniform(-1e6, 1e6),
        true,
      );
      break;
    case "magic":
      [...pick(random, MAGICS)].forEach((c, i) => out[field.offset + i] = c.charCodeAt(0));
  }
  return [out, field.name];
}

/** Dims (a cube, at most 32767 a side) that describe at least `voxels` voxels. */
function claimDims(view: DataView, voxels: number): void {
  const side = Math.min(32767, Math.ceil(Math.cbrt(voxels)));
  view.setInt16(40, 3, true);
  [1, 2, 3].forEach((i) => view.setInt16(40 + 2 * i, side, true));
}

function json(value: unknown): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
}

function randomBytes(random: Random, n: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: n }, () => random.int(0, 256));
}

/** Malformed JSON bodies for the job routes (none names an existing dataset or input). */
function jsonBodies(
  random: Random,
  route: "train" | "predictJob",
): [string, Uint8Array<ArrayBuffer>][] {
  const good = route === "train"
    ? { dataset: "no-such-dataset", config: { epochs: 1 } }
    : { model: "tiny", input: "missing/ct.nii.gz", output: "out/seg.nii.gz" };
  const text = JSON.stringify(good);
  const out: [string, Uint8Array<ArrayBuffer>][] = [
    ["json-empty", json("")],
    ["json-null", json("null")],
    ["json-array", json("[1,2,3]")],
    ["json-number", json("1e999")],
    ["json-string", json('"\\ud800"')],
    ["json-bom", json("\ufeff" + text)],
    ["json-invalid-utf8", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
    ["json-deep", json("[".repeat(200_000))],
    ["json-deep-closed", json("[".repeat(5000) + "]".repeat(5000))],
    ["json-proto", json('{"__proto__": {"admin": true}, "constructor": {"prototype": 1}}')],
    ["json-huge-string", json({ ...good, name: "x".repeat(2 * MiB) })],
    ["json-wrong-types", json({ dataset: 5, model: [], input: {}, output: null, config: "x" })],
    [
      "json-paths",
      json({ ...good, dataset: "../../etc", input: "/etc/passwd", output: "../x.nii" }),
    ],
    ["json-nul", json({ ...good, dataset: "a\u0000b", input: "a\u0000b.nii", name: "\u0000" })],
    ["json-unknown-field", json({ ...good, extra: 1 })],
    ["json-config-junk", json({ dataset: "nope", config: { "model.depth": -1, epochs: 1e308 } })],
    ["json-numbers", json({ ...good, overlap: 1e308, tta: "maybe", precision: "f8" })],
    ["json-duplicate-keys", json(text.slice(0, -1) + `,"${Object.keys(good)[0]}":7}`)],
  ];
  for (let i = 0; i < 12; i++) {
    const cut = random.int(0, text.length);
    out.push(["json-truncated", json(text.slice(0, cut))]);
  }
  for (let i = 0; i < 10; i++) {
    out.push(["json-random-bytes", randomBytes(random, random.int(1, 4096))]);
  }
  return out;
}

/**
 * The corpus for `seed`: about 430 cases, in a seeded shuffled order.
 *
 * @example
 * const cases = await generateCorpus(13);
 */
export async function generateCorpus(seed: number): Promise<CorpusCase[]> {
  const random = new Random(seed);
  const base = validNifti();
  const cases: CorpusCase[] = [];
  const add = (c: CorpusCase) => cases.push(c);
  const nifti = (kind: string, body: Uint8Array<ArrayBuffer>, gz: boolean, valid = false) =>
    add({ kind, route: "predict", body, contentType: NIFTI_TYPES[gz ? 1 : 0], valid });

  // Valid but odd: tiny and thin shapes, big-endian, NIfTI-2, an extension, scaling, gzip.
  const values = (n: number) => Array.from({ length: n }, (_, i) => (i * 37) % 1400 - 1000);
  nifti("valid", base, false, true);
  nifti("valid", await gzip(base) as Uint8Array<ArrayBuffer>, true, true);
  nifti("valid-odd-shape", validNifti([5, 7, 9], 2), false, true);
  nifti("valid-odd-shape", validNifti([1, 1, 1], 3), false, true);
  const odd = { dim: [3, 9, 7, 5, 1, 1, 1, 1], datatype: 4, bitpix: 16 };
  for (
    const extra of [
      { littleEndian: false, data: int16Bytes(values(315), false) },
      { version: 2 as const, data: int16Bytes(values(315), true) },
      { extension: new Uint8Array(64).fill(9), data: int16Bytes(values(315), true) },
      { sclSlope: 0.5, sclInter: -3, data: int16Bytes(values(315), true) },
    ]
  ) {
    nifti(
      "valid-odd-header",
      buildNifti({ ...odd, ...extra }) as Uint8Array<ArrayBuffer>,
      false,
      true,
    );
  }

  // One field mutated (half of them gzipped).
  for (let i = 0; i < 150; i++) {
    const [body, field] = mutateField(base, random);
    const gz = random.next() < 0.5;
    nifti(`field-${field}`, gz ? await gzip(body) as Uint8Array<ArrayBuffer> : body, gz);
  }
  // Random header bytes flipped.
  for (let i = 0; i < 40; i++) {
    const body = base.slice();
    // The fields a reader uses: sizeof_hdr … vox_offset, scaling, and the magic.
    for (let k = random.int(1, 9); k > 0; k--) {
      const at = random.next() < 0.9 ? random.int(0, 124) : random.int(344, 348);
      body[at] = random.int(0, 256);
    }
    nifti("header-bytes", body, false);
  }
  // Cut short: inside the header, inside the voxels; and a gzip cut short or corrupted.
  const baseGz = await gzip(base) as Uint8Array<ArrayBuffer>;
  for (let i = 0; i < 20; i++) nifti("truncated", base.slice(0, random.int(1, base.length)), false);
  for (let i = 0; i < 20; i++) {
    nifti("gzip-truncated", baseGz.slice(0, random.int(1, baseGz.length)), true);
  }
  for (let i = 0; i < 12; i++) {
    const body = baseGz.slice();
    for (let k = random.int(1, 4); k > 0; k--) {
      body[random.int(10, body.length)] ^= 1 << random.int(0, 8);
    }
    nifti("gzip-corrupt", body, true);
  }
  // Trailing bytes after a valid volume.
  const trailing = new Uint8Array(base.length + 100);
  trailing.set(base);
  nifti("trailing-bytes", trailing, false);

  // Gzip bombs: a valid header then zeros (1 MiB … 1 GiB); headers claiming GiB; no header.
  for (const zeros of [MiB, 64 * MiB, 1024 * MiB]) {
    nifti("gzip-bomb-trailing", await gzipWithZeros(base, zeros), true);
  }
  for (const voxels of [2 ** 28, 2 ** 31, 2 ** 44]) {
    const head = base.slice(0, 352);
    claimDims(new DataView(head.buffer), voxels);
    nifti("gzip-bomb-claim", await gzipWithZeros(head, 16 * MiB), true);
  }
  nifti("gzip-bomb-no-header", await gzipWithZeros(new Uint8Array(0), 256 * MiB), true);
  const hugeHeader = base.slice(0, 352);
  claimDims(new DataView(hugeHeader.buffer), 2 ** 40);
  nifti("claim-uncompressed", hugeHeader, false);

  // Random bytes, some starting like gzip; empty bodies.
  for (let i = 0; i < 20; i++) {
    const body = randomBytes(random, random.int(1, 65536));
    if (i % 4 === 0) body.set([0x1f, 0x8b, 8, 0]);
    nifti("random-bytes", body, i % 4 === 0);
  }
  for (const gz of [false, true, false]) nifti("empty", new Uint8Array(0), gz);

  // Wrong or odd content types on a valid body.
  for (
    const type of [
      "text/plain",
      "application/json",
      "multipart/form-data; boundary=x",
      "application/x-www-form-urlencoded",
      "image/png",
      "",
      "APPLICATION/GZIP",
      "application/octet-stream; charset=binary",
      "application/x-nifti-gz",
      "application/octet-stream, text/plain",
      "*/*",
      "application/",
    ]
  ) {
    add({ kind: "content-type", route: "predict", body: base, contentType: type || undefined });
  }

  // Content-Length lies, over a raw socket: huge, not a number, more than sent, less than sent.
  for (const declared of ["1000000000000", "9007199254740993", "-1", "abc", "1e3"]) {
    add({
      kind: "length-lie",
      route: "predict",
      body: base,
      contentType: NIFTI_TYPES[0],
      declaredLength: declared,
    });
  }
  add({
    kind: "length-lie",
    route: "predict",
    body: base,
    contentType: NIFTI_TYPES[0],
    declaredLength: String(base.length + 5000),
  });
  add({
    kind: "length-lie",
    route: "predict",
    body: base,
    contentType: NIFTI_TYPES[0],
    declaredLength: String(base.length - 100),
  });
  add({
    kind: "length-lie",
    route: "predict",
    body: baseGz,
    contentType: NIFTI_TYPES[1],
    declaredLength: String(baseGz.length + 10_000),
  });

  // The job routes: malformed JSON, wrong types, and a few with the wrong content type.
  for (const route of ["train", "predictJob"] as const) {
    for (const [kind, body] of jsonBodies(random, route)) {
      add({ kind, route, body, contentType: "application/json" });
    }
    for (const type of ["text/plain", undefined, "application/gzip"]) {
      add({ kind: "json-content-type", route, body: json({}), contentType: type });
    }
    add({
      kind: "json-length-lie",
      route,
      body: json({}),
      contentType: "application/json",
      declaredLength: "10000000000",
    });
  }
  // Resume of jobs that do not exist, with and without bodies.
  for (let i = 0; i < 15; i++) {
    const body = i % 3 === 0 ? new Uint8Array(0) : randomBytes(random, random.int(1, 2048));
    add({
      kind: "resume",
      route: "resume",
      body,
      contentType: i % 2 ? "application/json" : undefined,
    });
  }

  // A seeded shuffle, so the kinds interleave across the 8 concurrent senders.
  for (let i = cases.length - 1; i > 0; i--) {
    const j = random.int(0, i + 1);
    [cases[i], cases[j]] = [cases[j], cases[i]];
  }
  // Budget pressure, last so the 8 senders take them at once: slow chunked uploads of gzipped
  // 192³ int16 volumes (27 MiB each to decode and predict) whose gzip trailer is cut, so each is
  // inflated whole and then refused — only a few fit a small budget at a time, the rest get 503
  // + Retry-After (before their body is read, or once their header says what they need).
  const heavy = validNifti([1, 1, 1]).slice(0, 352);
  const heavyView = new DataView(heavy.buffer);
  [1, 2, 3].forEach((i) => heavyView.setInt16(40 + 2 * i, 192, true));
  const heavyGz = await gzipWithZeros(heavy, 2 * 192 ** 3);
  for (let i = 0; i < 16; i++) {
    const body = heavyGz.slice(0, heavyGz.length - 8);
    add({
      kind: "budget-pressure",
      route: "predict",
      body,
      contentType: NIFTI_TYPES[1],
      stallMs: 300,
    });
  }
  return cases;
}
