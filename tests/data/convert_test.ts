import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { readDataset, resolveCase } from "../../src/data/dataset.ts";
import { readNifti, writeNifti } from "../../src/data/nifti.ts";
import type { NiftiGeometry } from "../../src/data/nifti_geometry.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { Random } from "../../src/base/random.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { runCliCaptured } from "./cli_capture.ts";
import { withTempDir } from "./temp_dir.ts";

const geometryOf = (g: NiftiGeometry) => ({
  pixdim: g.pixdim.slice(0, 4),
  xyztUnits: g.xyztUnits,
  qformCode: g.qformCode,
  sformCode: g.sformCode,
  quatern: g.quatern,
  qoffset: g.qoffset,
  srow: g.srow,
});

/** A small oblique CT-like pair: HU image (int16) and a two-class label map. */
function phantom(shape: Shape3, seed: number): { image: Volume; label: Volume } {
  const rng = new Random(seed);
  const [D, H, W] = shape;
  const c = Math.cos(0.2), s = Math.sin(0.2);
  const affine = [
    -0.8 * c,
    -0.8 * s,
    0,
    100,
    0.8 * s * -1,
    0.8 * c,
    0,
    -50,
    0,
    0,
    2.5,
    -300,
    0,
    0,
    0,
    1,
  ];
  const geometry = { shape, spacingMm: [2.5, 0.8, 0.8] as Shape3, affine };
  const image = new Int16Array(D * H * W);
  const label = new Uint8Array(D * H * W);
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = x + W * (y + H * z);
        const r = Math.hypot(z - D / 2, (y - H / 2) / 2, (x - W / 2) / 2);
        label[i] = r < D / 3 ? (x < W / 2 ? 1 : 2) : 0;
        image[i] = label[i] ? -800 + rng.int(0, 100) : 40 + rng.int(-20, 20);
      }
    }
  }
  return { image: { ...geometry, data: image }, label: { ...geometry, data: label } };
}

Deno.test("voxseg convert + export: one case round-trips voxels and header geometry", async () => {
  await withTempDir(async (dir) => {
    const { image, label } = phantom([7, 19, 23], 1);
    await writeNifti(join(dir, "a.nii.gz"), image);
    const src = await readNifti(join(dir, "a.nii.gz"));
    await writeNifti(join(dir, "a_seg.nii.gz"), { ...src, data: label.data }, { like: src.header });
    const out = join(dir, "cases", "a.zarr");
    const conv = await runCliCaptured([
      "convert",
      ...["--image", join(dir, "a.nii.gz"), "--label", join(dir, "a_seg.nii.gz")],
      ...["--out", out, "--chunks", "8", "--codec", "gzip"],
    ]);
    strictEqual(conv.code, 0, conv.stderr);
    match(conv.stdout, /wrote .*a\.zarr: 7×19×23 voxels, 2\.5×0\.8×0\.8 mm, with label, gzip/);
    const c = await openCase(out);
    deepStrictEqual(c.chunks, [8, 8, 8]);
    for (const [flag, expected] of [[[], image.data], [["--labels"], label.data]] as const) {
      const file = join(dir, `back${flag.length}.nii.gz`);
      const exp = await runCliCaptured(["export", "--case", out, ...flag, "--out", file]);
      strictEqual(exp.code, 0, exp.stderr);
      const back = await readNifti(file);
      deepStrictEqual(Array.from(back.data), Array.from(expected));
      deepStrictEqual(back.affine, src.affine);
      deepStrictEqual(back.spacingMm, src.spacingMm);
      deepStrictEqual(geometryOf(back.header), geometryOf(src.header));
    }
  });
});

/** Writes an nnU-Net raw folder: imagesTr (n cases), labelsTr, imagesTs (1 case). */
async function rawFolder(dir: string, n: number, nnunetJson?: unknown) {
  for (const sub of ["imagesTr", "labelsTr", "imagesTs"]) {
    await Deno.mkdir(join(dir, sub), { recursive: true });
  }
  for (let i = 0; i < n; i++) {
    const { image, label } = phantom([6 + i, 17, 15], i);
    await writeNifti(join(dir, "imagesTr", `lung_${i}_0000.nii.gz`), image);
    await writeNifti(join(dir, "labelsTr", `lung_${i}.nii.gz`), label);
  }
  await writeNifti(join(dir, "imagesTs", "lung_9_0000.nii.gz"), phantom([5, 9, 9], 9).image);
  if (nnunetJson) await Deno.writeTextFile(join(dir, "dataset.json"), JSON.stringify(nnunetJson));
}

Deno.test("voxseg convert --raw: nnU-Net folder → cases + dataset.json", async () => {
  await withTempDir(async (dir) => {
    const raw = join(dir, "Dataset001_Lung");
    await Deno.mkdir(raw);
    await rawFolder(raw, 4, {
      channel_names: { "0": "CT" },
      labels: { background: 0, lung: 1, infection: 2 },
      numTraining: 4,
      file_ending: ".nii.gz",
    });
    const out = join(dir, "ds");
    const r = await runCliCaptured([
      "convert",
      "--raw",
      raw,
      "--out",
      out,
      "--val",
      "0.25",
      "--chunks",
      "8",
    ]);
    strictEqual(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    strictEqual(lines.filter((l) => /^\[\d\/5\] lung_\d /.test(l)).length, 5); // one line per case
    match(lines.at(-1)!, /5 cases \(train 3, val 1, test 1\), classes background, lung, infection/);
    const ds = await readDataset(out);
    deepStrictEqual(ds.classes, ["background", "lung", "infection"]);
    strictEqual(ds.modality, "CT");
    strictEqual(ds.name, "Dataset001_Lung");
    deepStrictEqual(ds.cases.map((c) => c.id), ["lung_0", "lung_1", "lung_2", "lung_3", "lung_9"]);
    const test = ds.cases.find((c) => c.id === "lung_9")!;
    deepStrictEqual([test.split, test.hasLabel, test.foreground], ["test", false, []]);
    deepStrictEqual(ds.targetSpacingMm, [2.5, Math.fround(0.8), Math.fround(0.8)]); // pixdim is float32
    ok(ds.intensity!.max < 0 && ds.intensity!.min >= -800); // foreground = lung HU only
    for (const entry of ds.cases.filter((c) => c.hasLabel)) {
      const c = await openCase(resolveCase(ds, entry.id));
      deepStrictEqual(c.shape, entry.shape);
      const label = (await c.readFullLabel()).data;
      for (const cls of [1, 2]) {
        const f = entry.foreground[cls];
        ok(f.length > 0);
        for (let j = 0; j < f.length; j += 3) {
          const [D, H, W] = entry.shape;
          ok(f[j] < D);
          strictEqual(label[f[j + 2] + W * (f[j + 1] + H * f[j])], cls);
        }
      }
    }
  });
});

Deno.test("voxseg convert --raw without nnU-Net dataset.json infers classes from labels", async () => {
  await withTempDir(async (dir) => {
    await rawFolder(join(dir, "raw"), 2);
    const r = await runCliCaptured([
      "convert",
      "--raw",
      join(dir, "raw"),
      "--out",
      join(dir, "ds"),
      "--val",
      "0.5",
    ]);
    strictEqual(r.code, 0, r.stderr);
    const ds = await readDataset(join(dir, "ds"));
    deepStrictEqual(ds.classes, ["background", "class_1", "class_2"]);
    deepStrictEqual(ds.cases.map((c) => c.split).sort(), ["test", "train", "val"]);
  });
});

Deno.test("voxseg convert/export: missing flags, files and bad inputs give clear messages", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], number, RegExp][] = [
      [["convert", "--image", "a.nii.gz"], 2, /voxseg convert: --out is required/],
      [["convert", "--out", join(dir, "x.zarr")], 2, /give --image FILE \(one case\) or --raw DIR/],
      [
        ["convert", "--image", join(dir, "no.nii.gz"), "--out", "x"],
        2,
        /--image .*no\.nii\.gz: no such file/,
      ],
      [["convert", "--image", "a", "--raw", "b", "--out", "x"], 2, /either --image .* or --raw/],
      [
        ["convert", "--image", "a", "--out", "x", "--codec", "lz4"],
        2,
        /--codec must be zstd or gzip, got "lz4"/,
      ],
      [["convert", "--image", "a", "--out", "x", "--chunks", "0"], 2, /--chunks must be D,H,W/],
      [["convert", "--raw", join(dir, "none"), "--out", "x"], 2, /--raw .*none: no such folder/],
      [["convert", "--bogus"], 2, /Unknown option '--bogus'/],
      [["export", "--out", "a.nii"], 2, /voxseg export: --case is required/],
      [
        ["export", "--case", join(dir, "nope.zarr"), "--out", "a.nii"],
        1,
        /case not found: .*nope\.zarr/,
      ],
    ];
    for (const [argv, code, re] of cases) {
      const r = await runCliCaptured(argv);
      strictEqual(r.code, code, `${argv.join(" ")}: ${r.stderr}`);
      match(r.stderr, re);
    }
    // A gap in a case's channels, cases with different channels, or a missing label, are
    // refused by name.
    const raw = join(dir, "raw");
    await rawFolder(raw, 1);
    const img = join(raw, "imagesTr", "lung_0_0000.nii.gz");
    await Deno.copyFile(img, join(raw, "imagesTr", "lung_0_0002.nii.gz"));
    let r = await runCliCaptured(["convert", "--raw", raw, "--out", join(dir, "o")]);
    strictEqual(r.code, 1);
    match(
      r.stderr,
      /case "lung_0" .* channels must be lung_0_0000 … lung_0_0001 .*missing lung_0_0001/,
    );
    await Deno.rename(
      join(raw, "imagesTr", "lung_0_0002.nii.gz"),
      join(raw, "imagesTr", "lung_0_0001.nii.gz"),
    );
    r = await runCliCaptured(["convert", "--raw", raw, "--out", join(dir, "o")]);
    match(r.stderr, /case "lung_9" has 1 channel file\(s\) but case "lung_0" has 2/);
    await Deno.remove(join(raw, "imagesTr", "lung_0_0001.nii.gz"));
    await Deno.remove(join(raw, "labelsTr", "lung_0.nii.gz"));
    r = await runCliCaptured(["convert", "--raw", raw, "--out", join(dir, "o")]);
    match(r.stderr, /case "lung_0" has no label: expected .*labelsTr\/lung_0\.nii\.gz/);
    // A label on another grid.
    const { image } = phantom([4, 5, 6], 0);
    await writeNifti(join(dir, "i.nii"), image);
    await writeNifti(join(dir, "l.nii"), { ...image, shape: [6, 5, 4] });
    r = await runCliCaptured([
      "convert",
      "--image",
      join(dir, "i.nii"),
      "--label",
      join(dir, "l.nii"),
      "--out",
      join(dir, "o.zarr"),
    ]);
    match(r.stderr, /label shape 6×5×4 differs from image shape 4×5×6/);
  });
});

const MRICRON = "/usr/share/mricron/templates";
const ch2 = `${MRICRON}/ch2.nii.gz`;
const aal = `${MRICRON}/aal.nii.gz`;
const haveMricron = [ch2, aal].every((f) => {
  try {
    return Deno.statSync(f).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: haveMricron
    ? "real NIfTI (mricron ch2 + aal atlas): convert → export keeps voxels, spacing, affine"
    : `real NIfTI round trip — IGNORED: ${ch2} absent (apt-get install -y mricron-data)`,
  ignore: !haveMricron,
  fn: async () => {
    await withTempDir(async (dir) => {
      const src = await readNifti(ch2);
      const srcLabel = await readNifti(aal);
      deepStrictEqual(src.shape, [181, 217, 181]);
      const out = join(dir, "ch2.zarr");
      const r = await runCliCaptured(["convert", "--image", ch2, "--label", aal, "--out", out]);
      strictEqual(r.code, 0, r.stderr);
      for (const [flag, expected] of [[[], src], [["--labels"], srcLabel]] as const) {
        const file = join(dir, `out${flag.length}.nii.gz`);
        strictEqual(
          (await runCliCaptured(["export", "--case", out, ...flag, "--out", file])).code,
          0,
        );
        const back = await readNifti(file);
        deepStrictEqual(back.shape, expected.shape);
        deepStrictEqual(back.spacingMm, expected.spacingMm);
        deepStrictEqual(back.affine, expected.affine);
        // The case keeps the image's header geometry; the atlas shares its grid.
        deepStrictEqual(geometryOf(back.header), geometryOf(src.header));
        ok(back.data.every((v, i) => v === expected.data[i]), "voxels differ");
      }
      const c = await openCase(out);
      const patch = await c.readLabel([80, 100, 80], [8, 8, 8]);
      const [, H, W] = src.shape;
      strictEqual(patch[0], srcLabel.data[80 + W * (100 + H * 80)]);
    });
  },
});

/** An MRI-like channel on the phantom's grid: float intensities without absolute units. */
function mriLike(image: Volume, seed: number): Volume {
  const rng = new Random(seed);
  const data = Float32Array.from(image.data, (hu) => 0.5 * (hu + 1000) + 20 + rng.normal());
  return { ...image, data };
}

Deno.test("voxseg convert --raw: two channels (CT + MRI-like) → c,z,y,x cases and per-channel statistics", async () => {
  await withTempDir(async (dir) => {
    const raw = join(dir, "Dataset002_Two");
    for (const sub of ["imagesTr", "labelsTr"]) {
      await Deno.mkdir(join(raw, sub), { recursive: true });
    }
    const sources: Volume[][] = [];
    for (let i = 0; i < 3; i++) {
      const { image, label } = phantom([6, 11, 13], i);
      const mr = mriLike(image, 10 + i);
      sources.push([image, mr, label]);
      await writeNifti(join(raw, "imagesTr", `c${i}_0000.nii.gz`), image);
      await writeNifti(join(raw, "imagesTr", `c${i}_0001.nii.gz`), mr);
      await writeNifti(join(raw, "labelsTr", `c${i}.nii.gz`), label);
    }
    await Deno.writeTextFile(
      join(raw, "dataset.json"),
      JSON.stringify({
        channel_names: { "0": "CT", "1": "T2" },
        labels: { background: 0, lung: 1, infection: 2 },
      }),
    );
    const out = join(dir, "ds");
    const r = await runCliCaptured(["convert", "--raw", raw, "--out", out, "--chunks", "4"]);
    strictEqual(r.code, 0, r.stderr);
    match(r.stdout, /3 cases .*channels CT, T2/);
    const ds = await readDataset(out);
    deepStrictEqual(ds.channels, ["CT", "T2"]);
    strictEqual(ds.modality, "CT");
    deepStrictEqual(ds.intensityChannels![0], ds.intensity);
    // Channel 1's foreground statistics: of T2 values at lung voxels, never of CT ones.
    const fg1 = ds.intensityChannels![1]!;
    let lo = Infinity, hi = -Infinity;
    for (const [image, mr, label] of sources) {
      for (let v = 0; v < label.data.length; v++) {
        if (label.data[v] === 0) continue;
        lo = Math.min(lo, mr.data[v]);
        hi = Math.max(hi, mr.data[v]);
        ok(image.data[v] < 0);
      }
    }
    deepStrictEqual([fg1.min, fg1.max], [lo, hi]);
    ok(fg1.mean > 20 && fg1.mean < 200 && fg1.p0_5 >= lo && fg1.p99_5 <= hi);
    for (const [k, entry] of ds.cases.entries()) {
      const [image, mr, label] = sources[k];
      strictEqual(entry.imageChannels!.length, 2);
      deepStrictEqual(entry.image, entry.imageChannels![0]);
      const mean = Array.from(mr.data).reduce((s, v) => s + v, 0) / mr.data.length;
      ok(Math.abs(entry.imageChannels![1].mean - mean) < 1e-3);
      const c = await openCase(resolveCase(ds, entry.id));
      strictEqual(c.channels, 2);
      deepStrictEqual(c.channelNames, ["CT", "T2"]);
      const [back0, back1] = await c.readFullChannels();
      deepStrictEqual(Array.from(back0.data), Array.from(image.data));
      deepStrictEqual(Float32Array.from(back1.data), mr.data);
      deepStrictEqual((await c.readFullLabel()).data, label.data);
      const meta = JSON.parse(await Deno.readTextFile(join(out, entry.path, "0", "zarr.json")));
      deepStrictEqual(meta.dimension_names, ["c", "z", "y", "x"]);
    }
  });
});

Deno.test("voxseg convert: a channel on another grid is refused naming the file; --image a,b", async () => {
  await withTempDir(async (dir) => {
    const { image, label } = phantom([5, 9, 7], 1);
    const a = join(dir, "a_0000.nii.gz"), b = join(dir, "a_0001.nii.gz");
    await writeNifti(a, image);
    await writeNifti(b, mriLike(image, 2));
    await writeNifti(join(dir, "seg.nii.gz"), label);
    const out = join(dir, "a.zarr");
    const r = await runCliCaptured([
      ...["convert", "--image", `${a},${b}`, "--label", join(dir, "seg.nii.gz")],
      ...["--out", out],
    ]);
    strictEqual(r.code, 0, r.stderr);
    match(r.stdout, /5×9×7 voxels, 2 channels/);
    strictEqual((await openCase(out)).channels, 2);
    // The second channel shifted by 3 mm, then resized: both refused, naming its file.
    const moved = { ...image, affine: image.affine.map((v, i) => (i === 3 ? v + 3 : v)) };
    await writeNifti(b, mriLike(moved, 2));
    let bad = await runCliCaptured(["convert", "--image", `${a},${b}`, "--out", out]);
    strictEqual(bad.code, 1);
    match(
      bad.stderr,
      /a_0001\.nii\.gz: channel 1 is not on the grid of channel 0 \(.*a_0000\.nii\.gz\): affine differs by up to 3 mm/,
    );
    const raw = join(dir, "raw");
    await Deno.mkdir(join(raw, "imagesTr"), { recursive: true });
    await Deno.mkdir(join(raw, "labelsTr"));
    await writeNifti(join(raw, "imagesTr", "x_0000.nii.gz"), image);
    await writeNifti(
      join(raw, "imagesTr", "x_0001.nii.gz"),
      mriLike(phantom([5, 9, 8], 1).image, 2),
    );
    await writeNifti(join(raw, "labelsTr", "x.nii.gz"), label);
    bad = await runCliCaptured(["convert", "--raw", raw, "--out", join(dir, "ds")]);
    strictEqual(bad.code, 1);
    match(
      bad.stderr,
      /x_0001\.nii\.gz: channel 1 is not on the grid of channel 0 .*shape 5×9×8 differs from 5×9×7/,
    );
  });
});

Deno.test("voxseg convert --raw: a one-channel dataset keeps the one-channel manifest and case layout", async () => {
  await withTempDir(async (dir) => {
    await rawFolder(join(dir, "raw"), 2, {
      channel_names: { "0": "CT" },
      labels: { background: 0, lung: 1, infection: 2 },
    });
    const r = await runCliCaptured([
      "convert",
      "--raw",
      join(dir, "raw"),
      "--out",
      join(dir, "ds"),
    ]);
    strictEqual(r.code, 0, r.stderr);
    const text = await Deno.readTextFile(join(dir, "ds", "dataset.json"));
    ok(!/channels|imageChannels|intensityChannels/.test(text), "no channel fields");
    const ds = await readDataset(join(dir, "ds"));
    for (const entry of ds.cases) {
      const meta = JSON.parse(
        await Deno.readTextFile(join(dir, "ds", entry.path, "0", "zarr.json")),
      );
      deepStrictEqual(meta.dimension_names, ["z", "y", "x"]);
      strictEqual(meta.shape.length, 3);
      const group = JSON.parse(await Deno.readTextFile(join(dir, "ds", entry.path, "zarr.json")));
      strictEqual(group.attributes.ome.multiscales[0].axes.length, 3);
      strictEqual(group.attributes.voxseg.channels, undefined);
    }
  });
});
