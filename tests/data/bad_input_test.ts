/**
 * Bad input, end to end: every error names the file (or URL) and the problem, and a failed
 * conversion leaves nothing behind — neither the output nor a temporary sibling.
 */

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { createLoader } from "../../src/data/loader.ts";
import { gzip } from "../../src/data/gzip.ts";
import { encodeNifti, writeNifti } from "../../src/data/nifti.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { runCliCaptured } from "./cli_capture.ts";
import { withTempDir } from "./temp_dir.ts";

const SHAPE: Shape3 = [6, 7, 8];
const N = 6 * 7 * 8;

/** An axis-aligned 6×7×8 volume at 2.5×0.8×0.8 mm with the given voxels. */
function volume(data: Volume["data"], originX = -20): Volume {
  const affine = [0.8, 0, 0, originX, 0, 0.8, 0, -30, 0, 0, 2.5, -40, 0, 0, 0, 1];
  return { shape: SHAPE, spacingMm: [2.5, 0.8, 0.8], affine, data };
}

const hu = () => volume(Int16Array.from({ length: N }, (_, i) => (i % 50) * 10 - 900));
const seg = () => volume(Uint8Array.from({ length: N }, (_, i) => i % 3));

/** The names in `dir`, sorted (temporary siblings start with a dot). */
const listing = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

async function convertCase(dir: string, image: string, label: string, out = "out.zarr") {
  const argv = ["convert", "--image", join(dir, image), "--label", join(dir, label)];
  return await runCliCaptured([...argv, "--out", join(dir, out)]);
}

Deno.test("bad NIfTI: truncated gzip, wrong magic, missing file — named, nothing written", async () => {
  await withTempDir(async (dir) => {
    await writeNifti(join(dir, "seg.nii.gz"), seg());
    const packed = await gzip(encodeNifti(hu()));
    await Deno.writeFile(join(dir, "cut.nii.gz"), packed.subarray(0, packed.length - 20));
    const magic = encodeNifti(hu());
    magic.set([0x78, 0x79, 0x7a, 0], 344); // "xyz" where "n+1" belongs
    await Deno.writeFile(join(dir, "magic.nii"), magic);
    const cases: [string, string, RegExp][] = [
      ["cut.nii.gz", "seg.nii.gz", /cut\.nii\.gz: corrupt gzip data: .*re-download/],
      [
        "magic.nii",
        "seg.nii.gz",
        /magic\.nii: not a NIfTI-1 file: magic "xyz" \(expected "n\+1"\)/,
      ],
      ["seg.nii.gz", "absent.nii.gz", /--label .*absent\.nii\.gz: no such file/],
    ];
    for (const [image, label, re] of cases) {
      const r = await convertCase(dir, image, label);
      ok(r.code !== 0, `${image} + ${label} was accepted`);
      match(r.stderr, re);
    }
    deepStrictEqual(listing(dir), ["cut.nii.gz", "magic.nii", "seg.nii.gz"]);
  });
});

Deno.test("bad pairs: label shape or geometry off the image grid — the label file is named", async () => {
  await withTempDir(async (dir) => {
    await writeNifti(join(dir, "ct.nii.gz"), hu());
    await writeNifti(join(dir, "moved.nii.gz"), volume(seg().data, -17.5)); // origin 2.5 mm off
    const flat = { ...seg(), shape: [7, 6, 8] as Shape3 };
    await writeNifti(join(dir, "reshaped.nii.gz"), flat);
    let r = await convertCase(dir, "ct.nii.gz", "moved.nii.gz");
    strictEqual(r.code, 1);
    match(
      r.stderr,
      /moved\.nii\.gz: label geometry differs from .*ct\.nii\.gz: affine entries differ by up to 2\.5 .*origin \(-17\.5, -30, -40\) vs \(-20, -30, -40\)/,
    );
    r = await convertCase(dir, "ct.nii.gz", "reshaped.nii.gz");
    match(r.stderr, /reshaped\.nii\.gz: label shape 7×6×8 differs from image shape 6×7×8/);
    deepStrictEqual(listing(dir), ["ct.nii.gz", "moved.nii.gz", "reshaped.nii.gz"]);
  });
});

Deno.test("bad values: non-integer, out-of-range and NaN labels, NaN images — file and voxel named", async () => {
  await withTempDir(async (dir) => {
    const at = (value: number, i = 61) => {
      const data = Float32Array.from(seg().data);
      data[i] = value;
      return volume(data);
    };
    await writeNifti(join(dir, "ct.nii.gz"), hu());
    await writeNifti(join(dir, "half.nii.gz"), at(0.5));
    await writeNifti(join(dir, "big.nii.gz"), at(300));
    await writeNifti(join(dir, "nan_seg.nii.gz"), at(NaN));
    const nanImage = Float32Array.from(hu().data);
    nanImage[61] = NaN;
    nanImage[62] = Infinity;
    await writeNifti(join(dir, "nan_ct.nii.gz"), volume(nanImage));
    // Voxel 61 of a 6×7×8 grid is (z=1, y=0, x=5).
    const cases: [string, string, RegExp][] = [
      ["ct.nii.gz", "half.nii.gz", /half\.nii\.gz: label value 0\.5 at voxel \(z=1, y=0, x=5\)/],
      ["ct.nii.gz", "big.nii.gz", /big\.nii\.gz: label value 300 at .*not an integer in 0\.\.255/],
      ["ct.nii.gz", "nan_seg.nii.gz", /nan_seg\.nii\.gz: label value NaN at voxel/],
      [
        "nan_ct.nii.gz",
        "big.nii.gz",
        /nan_ct\.nii\.gz: image has 2 non-finite voxels \(NaN or ±Infinity\), the first NaN at voxel \(z=1, y=0, x=5\)/,
      ],
    ];
    for (const [image, label, re] of cases) {
      const r = await convertCase(dir, image, label);
      strictEqual(r.code, 1, `${image} + ${label}: ${r.stderr}`);
      match(r.stderr, re);
    }
    ok(!listing(dir).some((n) => n.includes("out.zarr")), listing(dir).join(", "));
    // The library refuses the same, whoever calls it.
    await rejects(
      writeCase(join(dir, "lib.zarr"), { image: volume(nanImage) }),
      /image has 2 non-finite voxels/,
    );
  });
});

/** An nnU-Net raw folder with cases a, b, c naming classes background, lung, infection. */
async function rawFolder(dir: string, badLabel?: { case: string; value: number }) {
  for (const sub of ["imagesTr", "labelsTr"]) await Deno.mkdir(join(dir, sub), { recursive: true });
  for (const id of ["a", "b", "c"]) {
    const label = Uint8Array.from(seg().data);
    if (badLabel?.case === id) label[5] = badLabel.value;
    await writeNifti(join(dir, "imagesTr", `${id}_0000.nii.gz`), hu());
    await writeNifti(join(dir, "labelsTr", `${id}.nii.gz`), volume(label));
  }
  const labels = { background: 0, lung: 1, infection: 2 };
  await Deno.writeTextFile(join(dir, "dataset.json"), JSON.stringify({ labels }));
}

Deno.test("convert --raw: a bad case fails the whole dataset and leaves nothing half-written", async () => {
  await withTempDir(async (dir) => {
    const raw = join(dir, "raw"), out = join(dir, "out", "ds");
    await rawFolder(raw, { case: "b", value: 3 }); // 3 with classes 0..2
    let r = await runCliCaptured(["convert", "--raw", raw, "--out", out, "--val", "0"]);
    strictEqual(r.code, 1);
    match(
      r.stderr,
      /labelsTr\/b\.nii\.gz: label value 3 at voxel \(z=0, y=0, x=5\), but the dataset has 3 classes \(background, lung, infection\)/,
    );
    deepStrictEqual(listing(join(dir, "out")), [], "case a and the temp folder are gone");

    // Over an existing dataset: a failed run keeps the previous one whole.
    await rawFolder(raw);
    r = await runCliCaptured(["convert", "--raw", raw, "--out", out, "--val", "0"]);
    strictEqual(r.code, 0, r.stderr);
    const before = await Deno.readTextFile(join(out, "dataset.json"));
    await rawFolder(raw, { case: "c", value: 9 });
    r = await runCliCaptured(["convert", "--raw", raw, "--out", out, "--val", "0"]);
    match(r.stderr, /labelsTr\/c\.nii\.gz: label value 9 at voxel/);
    deepStrictEqual(listing(join(dir, "out")), ["ds"]);
    strictEqual(await Deno.readTextFile(join(out, "dataset.json")), before);
    deepStrictEqual(listing(join(out, "cases")), ["a.zarr", "b.zarr", "c.zarr"]);
    strictEqual((await readDataset(out)).cases.length, 3);

    // A folder holding other files is not replaced, nor the raw folder or one holding it.
    await Deno.mkdir(join(dir, "mine"));
    await Deno.writeTextFile(join(dir, "mine", "notes.txt"), "mine");
    r = await runCliCaptured(["convert", "--raw", raw, "--out", join(dir, "mine")]);
    strictEqual(r.code, 2);
    match(r.stderr, /--out .*mine is a folder with other files and no voxseg dataset\.json/);
    deepStrictEqual(listing(join(dir, "mine")), ["notes.txt"]);
    for (const out of [raw, dir]) {
      r = await runCliCaptured(["convert", "--raw", raw, "--out", out]);
      strictEqual(r.code, 2);
      match(r.stderr, /--out .* holds the raw folder .*raw; give a folder outside it/);
    }
    strictEqual(listing(join(raw, "imagesTr")).length, 3);
  });
});

Deno.test("bad cases: corrupt or truncated chunks name the chunk file", async () => {
  await withTempDir(async (dir) => {
    for (const codec of ["gzip", "zstd"] as const) {
      const path = join(dir, `${codec}.zarr`);
      await writeCase(path, { image: hu(), label: seg(), chunks: 4, codec });
      const chunk = join(path, "0", "c", "1", "0", "1");
      const bytes = await Deno.readFile(chunk);
      await Deno.writeFile(chunk, bytes.subarray(0, bytes.length >> 1));
      const c = await openCase(path);
      strictEqual((await c.readImage([0, 0, 0], [4, 4, 4])).length, 64); // other chunks read
      await rejects(
        c.readImage([4, 0, 4], [2, 2, 2]),
        new RegExp(
          `cannot read chunk .*${codec}\\.zarr/0/c/1/0/1: Failed to decode chunk via codec ` +
            `"${codec}" .*truncated or corrupt`,
        ),
      );
    }
    await Deno.writeTextFile(join(dir, "gzip.zarr", "zarr.json"), "{ not json");
    await rejects(openCase(join(dir, "gzip.zarr")), /not a voxseg case: .*gzip\.zarr/);
  });
});

/** A URL on 127.0.0.1 where nothing listens. */
function closedPortUrl(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return `http://127.0.0.1:${port}`;
}

Deno.test("unreachable URLs: dataset, case and export say which URL and why", async () => {
  const url = closedPortUrl();
  await rejects(
    readDataset(`${url}/ds`),
    new RegExp(`cannot fetch ${url}/ds/dataset\\.json: .*Connection refused`),
  );
  await rejects(
    createLoader({ dataset: `${url}/ds`, patchSize: [4, 4, 4], batchSize: 1, seed: 0 }),
    /cannot fetch .*\/ds\/dataset\.json/,
  );
  await rejects(
    openCase(`${url}/a.zarr`),
    new RegExp(`cannot fetch ${url}/a\\.zarr/zarr\\.json: .*Connection refused`),
  );
  const r = await runCliCaptured(["export", "--case", `${url}/a.zarr`, "--out", "never.nii"]);
  strictEqual(r.code, 1);
  match(r.stderr, /voxseg export: cannot fetch http:\/\/127\.0\.0\.1:\d+\/a\.zarr\/zarr\.json/);
});

Deno.test("a server that fails mid-stream: the loader's error names the chunk URL", async () => {
  await withTempDir(async (dir) => {
    await generateSynthDataset(dir, { cases: 3, shape: [8, 16, 16], seed: 2, chunks: 8 });
    let failing = false;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (failing && path.includes("/c/")) return new Response("down", { status: 503 });
      try {
        return new Response(await Deno.readFile(join(dir, path)));
      } catch {
        return new Response("not found", { status: 404 });
      }
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}`;
      const loader = await createLoader({
        dataset: url,
        patchSize: [8, 16, 16],
        batchSize: 1,
        seed: 0,
        workers: 0,
        prefetch: 1,
        split: "all",
        cacheBytes: 0, // every read goes to the server
      });
      try {
        ok(!(await loader.next()).done);
        failing = true;
        // A batch read ahead before the failure may still arrive; a later one must fail.
        const error = await (async () => {
          for (let i = 0; i < 50; i++) {
            try {
              await loader.next();
            } catch (e) {
              return e as Error;
            }
          }
        })();
        ok(error, "the loader kept going without its server");
        match(
          error.message,
          /loading batch \d+: cannot read chunk http:\/\/127\.0\.0\.1:\d+\/cases\/synth_\d+\.zarr\/.*\/c\/\d+\/\d+\/\d+: Unexpected response status 503/,
        );
      } finally {
        loader.close();
      }
    } finally {
      await server.shutdown();
    }
  });
});
