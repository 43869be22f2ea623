import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import { gzip } from "../../src/data/gzip.ts";
import {
  decodeNifti,
  encodeNifti,
  InvalidNiftiError,
  niftiAffine,
  niftiSizes,
  parseNiftiHeader as parseHeader,
  readNifti,
  readNiftiStream,
  writeNifti,
} from "../../src/data/nifti.ts";
import type { NiftiGeometry } from "../../src/data/nifti_geometry.ts";
import type { Shape3, Volume, VoxelArray } from "../../src/data/volume.ts";
import { buildNifti, float32Bytes, int16Bytes } from "./nifti_builder.ts";
import { withTempDir } from "./temp_dir.ts";
import { gzipWithZeros } from "../fixtures/gzip_bomb.ts";

const SHAPE: Shape3 = [3, 4, 5]; // D,H,W: nz=3, ny=4, nx=5
const N = 60;
const AFFINE = [0.5, 0, 0, -10, 0, 0.75, 0, 20, 0, 0, 2, 5, 0, 0, 0, 1];

function volume(data: VoxelArray, affine = AFFINE): Volume {
  return { shape: SHAPE, spacingMm: [2, 0.75, 0.5], affine, data };
}

function close(actual: number[], expected: number[], tol = 1e-5) {
  strictEqual(actual.length, expected.length);
  actual.forEach((a, i) => {
    ok(Math.abs(a - expected[i]) <= tol, `[${i}]: ${a} vs ${expected[i]} (${actual})`);
  });
}

const DTYPES: [string, (n: number) => VoxelArray][] = [
  ["uint8", (n) => Uint8Array.from({ length: n }, (_, i) => (i * 7) % 256)],
  ["int8", (n) => Int8Array.from({ length: n }, (_, i) => (i % 256) - 128)],
  ["int16", (n) => Int16Array.from({ length: n }, (_, i) => i * 531 - 16000)],
  ["uint16", (n) => Uint16Array.from({ length: n }, (_, i) => i * 1087)],
  ["int32", (n) => Int32Array.from({ length: n }, (_, i) => i * 35_791_394 - 2e9)],
  ["float32", (n) => Float32Array.from({ length: n }, (_, i) => Math.fround(i * 0.1 - 3))],
  ["float64", (n) => Float64Array.from({ length: n }, (_, i) => i * Math.PI - 1e10)],
];

for (const [name, make] of DTYPES) {
  for (const ext of [".nii", ".nii.gz"]) {
    Deno.test(`nifti round trip ${name} 3×4×5 ${ext}`, () =>
      withTempDir(async (dir) => {
        const path = join(dir, `a${ext}`);
        const data = make(N);
        await writeNifti(path, volume(data));
        const back = await readNifti(path);
        strictEqual(back.data.constructor, data.constructor);
        deepStrictEqual(Array.from(back.data), Array.from(data));
        deepStrictEqual(back.shape, SHAPE);
        deepStrictEqual(back.spacingMm, [2, 0.75, 0.5]);
        close(back.affine, AFFINE);
        strictEqual(back.header.sformCode, 2);
        strictEqual(back.header.qformCode, 2);
        const bytes = await Deno.readFile(path);
        strictEqual(bytes[0] === 0x1f && bytes[1] === 0x8b, ext === ".nii.gz");
        deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), [`a${ext}`]); // no temp left
      }));
  }
}

Deno.test("nifti reads big-endian int16 and float32", async () => {
  const values = Array.from({ length: N }, (_, i) => i * 300 - 9000);
  for (
    const [datatype, bitpix, bytes, expected] of [
      [4, 16, int16Bytes(values, false), Int16Array.from(values)],
      [
        16,
        32,
        float32Bytes(values.map((v) => v / 8), false),
        Float32Array.from(values, (v) => v / 8),
      ],
    ] as const
  ) {
    const v = await decodeNifti(buildNifti({
      littleEndian: false,
      dim: [3, 5, 4, 3, 1, 1, 1, 1],
      datatype,
      bitpix,
      pixdim: [1, 0.5, 0.75, 2, 1, 1, 1, 1],
      data: bytes,
    }));
    strictEqual(v.header.littleEndian, false);
    strictEqual(v.data.constructor, expected.constructor);
    deepStrictEqual(Array.from(v.data), Array.from(expected));
    deepStrictEqual(v.spacingMm, [2, 0.75, 0.5]);
  }
});

Deno.test("nifti scl_slope/scl_inter: float32 when non-trivial, raw type otherwise", async () => {
  const raw = Array.from({ length: N }, (_, i) => i * 10);
  const make = (sclSlope: number, sclInter: number) =>
    decodeNifti(buildNifti({
      dim: [3, 5, 4, 3, 1, 1, 1, 1],
      datatype: 4,
      bitpix: 16,
      sclSlope,
      sclInter,
      data: int16Bytes(raw, true),
    }));
  const scaled = await make(0.5, -1024);
  ok(scaled.data instanceof Float32Array);
  deepStrictEqual(Array.from(scaled.data), raw.map((v) => v * 0.5 - 1024));
  for (const [slope, inter] of [[1, 0], [0, 7], [NaN, 3]]) {
    const plain = await make(slope, inter);
    ok(plain.data instanceof Int16Array, `slope ${slope} inter ${inter} keeps int16`);
    deepStrictEqual(Array.from(plain.data), raw);
  }
});

Deno.test("nifti honours vox_offset past header extensions", async () => {
  const values = Array.from({ length: N }, (_, i) => i - 30);
  const extension = new Uint8Array(96).fill(0xab); // an esize-96 extension, contents ignored
  const bytes = buildNifti({
    dim: [3, 5, 4, 3, 1, 1, 1, 1],
    datatype: 4,
    bitpix: 16,
    extension,
    data: int16Bytes(values, true),
  });
  const v = await decodeNifti(bytes);
  strictEqual(v.header.voxOffset, 448);
  deepStrictEqual(Array.from(v.data), values);
});

Deno.test("nifti-2 read: int64 dims, float64 geometry, sform", async () => {
  const values = Array.from({ length: N }, (_, i) => i * 0.25);
  const srow = [0.5, 0, 0, -10.125, 0, 0.75, 0, 20.0625, 0, 0, 2, 5.5];
  for (const littleEndian of [true, false]) {
    const v = await decodeNifti(buildNifti({
      version: 2,
      littleEndian,
      dim: [3, 5, 4, 3, 1, 1, 1, 1],
      datatype: 16,
      bitpix: 32,
      pixdim: [1, 0.5, 0.75, 2, 1, 1, 1, 1],
      sformCode: 1,
      srow,
      data: float32Bytes(values, littleEndian),
    }));
    strictEqual(v.header.version, 2);
    deepStrictEqual(v.shape, SHAPE);
    deepStrictEqual(Array.from(v.data), values);
    deepStrictEqual(v.affine, [...srow, 0, 0, 0, 1]);
    deepStrictEqual(v.spacingMm, [2, 0.75, 0.5]);
  }
});

Deno.test("nifti 4D: one volume accepted, more refused with a clear message", async () => {
  const one = await decodeNifti(buildNifti({
    dim: [4, 5, 4, 3, 1, 1, 1, 1],
    datatype: 2,
    bitpix: 8,
    data: new Uint8Array(N),
  }));
  deepStrictEqual(one.shape, SHAPE);
  await rejects(
    decodeNifti(buildNifti({
      dim: [4, 5, 4, 3, 2, 1, 1, 1],
      datatype: 2,
      bitpix: 8,
      data: new Uint8Array(2 * N),
    })),
    /4D NIfTI with 2 volumes.*split it/,
  );
  await rejects(
    decodeNifti(buildNifti({
      dim: [5, 5, 4, 3, 1, 3, 1, 1],
      datatype: 2,
      bitpix: 8,
      data: new Uint8Array(3 * N),
    })),
    /5D NIfTI \(dim\[5\] = 3\)/,
  );
});

Deno.test("nifti affine: sform beats qform; qform-only uses the quaternion; neither uses pixdim", async () => {
  // qform: 90° about z (b=c=0, d=sin45°), qfac −1, offsets.
  const s = Math.SQRT1_2;
  const base = {
    dim: [3, 5, 4, 3, 1, 1, 1, 1],
    datatype: 2,
    bitpix: 8,
    pixdim: [-1, 0.5, 0.75, 2, 1, 1, 1, 1],
    quatern: [0, 0, s],
    qoffset: [1, 2, 3],
    srow: [3, 0, 0, 7, 0, 3, 0, 8, 0, 0, 3, 9],
    data: new Uint8Array(N),
  };
  const qformOnly = await decodeNifti(buildNifti({ ...base, qformCode: 1, sformCode: 0 }));
  // R = [[0,-1,0],[1,0,0],[0,0,1]]; columns scaled by 0.5, 0.75, −2.
  close(qformOnly.affine, [0, -0.75, 0, 1, 0.5, 0, 0, 2, 0, 0, -2, 3, 0, 0, 0, 1]);
  const both = await decodeNifti(buildNifti({ ...base, qformCode: 1, sformCode: 4 }));
  deepStrictEqual(both.affine, [3, 0, 0, 7, 0, 3, 0, 8, 0, 0, 3, 9, 0, 0, 0, 1]);
  const neither = await decodeNifti(buildNifti({ ...base, qformCode: 0, sformCode: 0 }));
  // nibabel's base affine: x flipped, grid centre at the origin.
  deepStrictEqual(neither.affine, [-0.5, 0, 0, 1, 0, 0.75, 0, -1.125, 0, 0, 2, -2, 0, 0, 0, 1]);
});

Deno.test("nifti write without `like` derives a qform that matches an oblique affine", async () => {
  const c = Math.cos(0.3), s = Math.sin(0.3);
  // Rotation about x with spacing (x 0.5, y 0.75, z 2) and a left-handed flip of x.
  const affine = [-0.5, 0, 0, 12, 0, 0.75 * c, -2 * s, -3, 0, 0.75 * s, 2 * c, 40, 0, 0, 0, 1];
  const bytes = encodeNifti(volume(new Int16Array(N), affine));
  const v = await decodeNifti(bytes);
  close(v.affine, affine);
  const qform = niftiAffine({ ...v.header, sformCode: 0 });
  close(qform, affine, 1e-5);
  strictEqual(v.header.pixdim[0], -1);
});

Deno.test("nifti write `like` a source keeps its geometry fields exactly", () =>
  withTempDir(async (dir) => {
    const src = await decodeNifti(buildNifti({
      dim: [3, 5, 4, 3, 1, 1, 1, 1],
      datatype: 4,
      bitpix: 16,
      pixdim: [-1, 0.7, 0.7, 2.5, 1, 1, 1, 1],
      qformCode: 1,
      sformCode: 1,
      quatern: [0.1, 0.2, 0.3],
      qoffset: [-100.5, 20.25, 3.125],
      srow: [0.69, 0.01, 0.02, -100.5, 0.01, 0.7, 0.03, 20.25, 0.02, 0.01, 2.49, 3.125],
      xyztUnits: 10,
      data: int16Bytes(new Array(N).fill(-1000), true),
    }));
    const path = join(dir, "seg.nii.gz");
    const labels = Uint8Array.from({ length: N }, (_, i) => i % 3);
    await writeNifti(path, { ...src, data: labels }, { like: src.header });
    const back = await readNifti(path);
    const pick = (g: NiftiGeometry) => ({
      pixdim: g.pixdim,
      xyztUnits: g.xyztUnits,
      qformCode: g.qformCode,
      sformCode: g.sformCode,
      quatern: g.quatern,
      qoffset: g.qoffset,
      srow: g.srow,
    });
    deepStrictEqual(pick(back.header), pick(src.header));
    deepStrictEqual(back.affine, src.affine);
    deepStrictEqual(Array.from(back.data), Array.from(labels));
    ok(back.data instanceof Uint8Array);
    await rejects(
      writeNifti(join(dir, "bad.nii"), { ...volume(new Uint8Array(24)), shape: [2, 3, 4] }, {
        like: src.header,
      }),
      /differs from the `like` header/,
    );
  }));

Deno.test("nifti gzip is detected by magic bytes, not the extension", () =>
  withTempDir(async (dir) => {
    const path = join(dir, "really_gzipped.nii");
    const data = Int16Array.from({ length: N }, (_, i) => i);
    await Deno.writeFile(path, await gzip(encodeNifti(volume(data))));
    deepStrictEqual(Array.from((await readNifti(path)).data), Array.from(data));
    const plain = join(dir, "not_gzipped.nii.gz");
    await writeNifti(plain, volume(data), { gzip: false });
    deepStrictEqual(Array.from((await readNifti(plain)).data), Array.from(data));
  }));

Deno.test("nifti errors say what is wrong and what to do", () =>
  withTempDir(async (dir) => {
    await rejects(readNifti(join(dir, "missing.nii.gz")), /NIfTI file not found: .*missing/);
    const junk = new Uint8Array(400);
    new DataView(junk.buffer).setInt32(0, 123, true);
    await rejects(decodeNifti(junk), /not a NIfTI file: header size 123 \(expected 348 or 540\)/);
    const base = { dim: [3, 5, 4, 3, 1, 1, 1, 1], datatype: 4, bitpix: 16 };
    await rejects(
      decodeNifti(buildNifti({ ...base, data: new Uint8Array(2 * N) }).subarray(0, 352 + 10)),
      /truncated NIfTI: 60 int16 voxels need 472 bytes/,
    );
    await rejects(
      decodeNifti(buildNifti({ ...base, magic: "ni1\0", data: new Uint8Array(2 * N) })),
      /NIfTI pair \(\.hdr\/\.img\)/,
    );
    await rejects(
      decodeNifti(buildNifti({ ...base, datatype: 128, bitpix: 24, data: new Uint8Array(3 * N) })),
      /unsupported NIfTI datatype 128 \(rgb24\)/,
    );
    const path = join(dir, "bad.nii");
    await Deno.writeFile(path, junk);
    await rejects(readNifti(path), /bad\.nii: not a NIfTI file/);
  }));

/** A stream of `bytes` in pieces of `piece` bytes; `pulled()` says how many were taken. */
function trickle(bytes: Uint8Array, piece: number) {
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => at };
}

const INT16 = { dim: [3, 5, 4, 3, 1, 1, 1, 1], datatype: 4, bitpix: 16 };

Deno.test("readNiftiStream: the same volume as decodeNifti, plain and gzipped, in 7-byte pieces", async () => {
  const values = Array.from({ length: N }, (_, i) => i * 300 - 9000);
  const variants = {
    "big-endian int16": buildNifti({
      ...INT16,
      littleEndian: false,
      data: int16Bytes(values, false),
    }),
    "scaled int16": buildNifti({
      ...INT16,
      sclSlope: 0.5,
      sclInter: -3,
      data: int16Bytes(values, true),
    }),
    "scaled float32": buildNifti({
      ...INT16,
      datatype: 16,
      bitpix: 32,
      sclSlope: 2,
      data: float32Bytes(values, true),
    }),
    "extension": buildNifti({
      ...INT16,
      extension: new Uint8Array(96).fill(0xab),
      data: int16Bytes(values, true),
    }),
    "nifti-2 big-endian": buildNifti({
      ...INT16,
      version: 2,
      littleEndian: false,
      data: int16Bytes(values, false),
    }),
  };
  for (const [name, plain] of Object.entries(variants)) {
    const expected = await decodeNifti(plain);
    for (const bytes of [plain, await gzip(plain)]) {
      const { volume, gzipped } = await readNiftiStream(trickle(bytes, 7).stream);
      strictEqual(gzipped, bytes !== plain, name);
      strictEqual(volume.data.constructor, expected.data.constructor, name);
      deepStrictEqual(Array.from(volume.data), Array.from(expected.data), name);
      deepStrictEqual(volume.header, expected.header, name);
      deepStrictEqual(volume.affine, expected.affine, name);
    }
  }
});

Deno.test("readNiftiStream: onHeader sees the sizes first; a refusal stops the read there", async () => {
  // A 4-byte-body lie: the header claims 256³ float64 (128 MiB) of voxels.
  const claim = buildNifti({
    dim: [3, 256, 256, 256, 1, 1, 1, 1],
    datatype: 64,
    bitpix: 64,
    data: new Uint8Array(0),
  });
  for (const bytes of [claim, await gzipWithZeros(claim, 4 << 20)]) {
    const { stream, pulled } = trickle(bytes, 1024);
    let seen = 0;
    const refused = new Error("over budget");
    await rejects(
      readNiftiStream(stream, {
        onHeader: (_h, sizes) => {
          seen = sizes.decodedBytes;
          throw refused;
        },
      }),
      (e) => e === refused,
    );
    strictEqual(seen, 256 ** 3 * 8);
    ok(pulled() <= 2048, `read ${pulled()} of ${bytes.length} bytes before refusing`);
  }
});

Deno.test("readNiftiStream: a gzip bomb behind a small header stops at the first extra byte", async () => {
  const small = buildNifti({ ...INT16, data: new Uint8Array(2 * N) });
  const bomb = await gzipWithZeros(small, 64 << 20); // 64 MiB of zeros after the volume
  const { stream, pulled } = trickle(bomb, 65536);
  await rejects(
    readNiftiStream(stream),
    (e) =>
      e instanceof InvalidNiftiError &&
      /continues past the 472 bytes its header describes/.test(e.message),
  );
  ok(pulled() <= 65536, `pulled ${pulled()} of ${bomb.length} compressed bytes`);
  // "ignore" reads a longer file whole (as decodeNifti does) and keeps the volume.
  const { volume } = await readNiftiStream(trickle(bomb, 65536).stream, { trailing: "ignore" });
  deepStrictEqual(volume.shape, SHAPE);
});

Deno.test("readNiftiStream: empty, short, truncated, corrupt gzip, and source errors", async () => {
  const stream = (bytes: Uint8Array) => trickle(bytes, 100).stream;
  const invalid = (re: RegExp) => (e: unknown) =>
    e instanceof InvalidNiftiError && re.test((e as Error).message);
  await rejects(readNiftiStream(stream(new Uint8Array(0))), invalid(/the body is empty/));
  await rejects(readNiftiStream(stream(new Uint8Array(3))), invalid(/only 3 bytes/));
  const good = buildNifti({ ...INT16, data: new Uint8Array(2 * N) });
  await rejects(
    readNiftiStream(stream(good.subarray(0, 200))),
    invalid(/header needs 348 bytes, the file has 200/),
  );
  await rejects(
    readNiftiStream(stream(good.subarray(0, 400))),
    invalid(
      /truncated NIfTI: 60 int16 voxels need 472 bytes from vox_offset 352, but the file has 400/,
    ),
  );
  const gz = await gzip(good);
  await rejects(
    readNiftiStream(stream(gz.subarray(0, gz.length - 6))),
    invalid(/corrupt gzip data/),
  );
  const broken = new Error("connection reset");
  const failing = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(gz.subarray(0, 30));
      controller.error(broken);
    },
  });
  await rejects(readNiftiStream(failing), (e) => e === broken);
  const aborted = new AbortController();
  const hanging = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(good.subarray(0, 100));
    },
  });
  const read = readNiftiStream(hanging, { signal: aborted.signal });
  aborted.abort(new Error("client went away"));
  await rejects(read, /client went away/);
});

Deno.test("niftiSizes: absurd dims and vox_offset are refused naming the field", () => {
  const header = (over: Record<string, unknown>) => ({
    ...parseHeader(buildNifti({ ...INT16, data: new Uint8Array(2 * N) })),
    ...over,
  });
  deepStrictEqual(niftiSizes(header({})), {
    voxels: 60,
    voxelBytes: 120,
    fileBytes: 472,
    decodedBytes: 120,
  });
  strictEqual(niftiSizes(header({ sclSlope: 2 })).decodedBytes, 120 + 240);
  throws(
    () => niftiSizes(header({ dim: [3, 2 ** 20, 2 ** 20, 2 ** 20, 1, 1, 1, 1] })),
    /dim\[1\.\.3\] = 1048576×1048576×1048576 int16 voxels would take/,
  );
  throws(
    () => niftiSizes(header({ voxOffset: 1e30 })),
    /vox_offset 1e\+30 puts the voxel data past 1 TiB/,
  );
});
