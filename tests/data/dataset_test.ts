import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  buildManifest,
  caseStats,
  type DatasetManifest,
  defaultSplit,
  percentileSorted,
  readDataset,
  resolveCase,
  writeDataset,
} from "../../src/data/dataset.ts";
import { Random } from "../../src/base/random.ts";
import { affineFromSpacing, type Shape3, type Volume } from "../../src/data/volume.ts";
import { withStaticServer } from "./static_server.ts";
import { withTempDir } from "./temp_dir.ts";

const SHAPE: Shape3 = [9, 11, 13];
const N = 9 * 11 * 13;

function pair(spacingMm: Shape3 = [2, 1, 1]): { image: Volume; label: Volume } {
  const geometry = { shape: SHAPE, spacingMm, affine: affineFromSpacing(spacingMm) };
  const image = Int16Array.from({ length: N }, (_, i) => i - 500);
  const label = Uint8Array.from({ length: N }, (_, i) => (i % 10 === 0 ? 1 : i % 97 === 0 ? 2 : 0));
  return { image: { ...geometry, data: image }, label: { ...geometry, data: label } };
}

Deno.test("caseStats: counts, sampled coordinates on their class, seeded and capped", () => {
  const { image, label } = pair();
  const stats = caseStats(image, label, ["background", "a", "b"], new Random(3), {
    maxPerClass: 50,
  });
  const count = (v: number) => label.data.filter((x) => x === v).length;
  deepStrictEqual(stats.voxelsPerClass, [count(0), count(1), count(2)]);
  deepStrictEqual(stats.foreground[0], []);
  strictEqual(stats.foreground[1].length, 50 * 3); // capped (class 1 has 129 voxels)
  strictEqual(stats.foreground[2].length, count(2) * 3); // all of a small class
  for (const c of [1, 2]) {
    const f = stats.foreground[c];
    const flat: number[] = [];
    for (let j = 0; j < f.length; j += 3) {
      const [z, y, x] = [f[j], f[j + 1], f[j + 2]];
      ok(z < 9 && y < 11 && x < 13);
      const i = x + 13 * (y + 11 * z);
      strictEqual(label.data[i], c, `coordinate (${z},${y},${x}) is class ${c}`);
      flat.push(i);
    }
    deepStrictEqual(flat, [...new Set(flat)].sort((a, b) => a - b)); // distinct, sorted
  }
  const again = caseStats(image, label, ["background", "a", "b"], new Random(3), {
    maxPerClass: 50,
  });
  deepStrictEqual(again.foreground, stats.foreground);
  const other = caseStats(image, label, ["background", "a", "b"], new Random(4), {
    maxPerClass: 50,
  });
  ok(JSON.stringify(other.foreground[1]) !== JSON.stringify(stats.foreground[1]));
  const fg = Array.from(image.data).filter((_, i) => label.data[i] > 0);
  deepStrictEqual([stats.min, stats.max], [Math.min(...fg), Math.max(...fg)]);
  strictEqual(stats.intensities.length, fg.length);
});

Deno.test("caseStats refuses label values beyond the classes, infers them when not given", () => {
  const { image, label } = pair();
  throws(
    () => caseStats(image, label, ["background", "a"], new Random(0)),
    /label value 2 at voxel \(z=0, y=7, x=6\), but the dataset has 2 classes \(background, a\)/,
  );
  const inferred = caseStats(image, label, undefined, new Random(0));
  strictEqual(inferred.voxelsPerClass.length, 3);
});

Deno.test("buildManifest: median spacing, pooled intensity percentiles, padded class arrays", () => {
  const cases = ([[2, 1, 1], [3, 0.5, 0.5], [5, 0.7, 0.9]] as Shape3[]).map((sp, i) => {
    const { image, label } = pair(sp);
    return {
      id: `c${i}`,
      path: `cases/c${i}.zarr`,
      split: "train" as const,
      stats: caseStats(image, label, undefined, new Random(i)),
    };
  });
  const m = buildManifest({ name: "t", modality: "CT", classes: ["bg", "a", "b", "c"], cases });
  deepStrictEqual(m.targetSpacingMm, [3, 0.7, 0.9]);
  strictEqual(m.cases[0].voxelsPerClass.length, 4);
  deepStrictEqual(m.cases[0].foreground[3], []);
  const fg = Array.from(pair().image.data).filter((_, i) => pair().label.data[i] > 0).sort((a, b) =>
    a - b
  );
  const intensity = m.intensity!;
  ok(Math.abs(intensity.mean - fg.reduce((s, v) => s + v, 0) / fg.length) < 1e-9);
  strictEqual(
    intensity.p99_5,
    percentileSorted(fg.flatMap((v) => [v, v, v]).sort((a, b) => a - b), 99.5),
  );
  deepStrictEqual(percentileSorted([1, 2, 3, 4], 50), 2.5);
  throws(
    () => buildManifest({ name: "t", modality: "CT", classes: ["bg", "a"], cases }),
    /case c0 has label values up to 2, but the dataset has 2 classes/,
  );
});

function manifest(): DatasetManifest {
  const { image, label } = pair();
  const stats = caseStats(image, label, ["background", "lung", "lesion"], new Random(0));
  return buildManifest({
    name: "demo",
    modality: "CT",
    classes: ["background", "lung", "lesion"],
    cases: [
      { id: "a", path: "cases/a.zarr", split: "train", stats },
      { id: "b", path: "cases/b.zarr", split: "val", stats },
      {
        id: "t",
        path: "cases/t.zarr",
        split: "test",
        stats: { shape: SHAPE, spacingMm: [2, 1, 1] },
      },
    ],
  });
}

Deno.test("dataset.json round trip (folder or file path), resolveCase", async () => {
  await withTempDir(async (dir) => {
    const m = manifest();
    await writeDataset(dir, m);
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["dataset.json"]);
    for (const location of [dir, join(dir, "dataset.json")]) {
      const ds = await readDataset(location);
      const { root, ...rest } = ds;
      strictEqual(root, dir);
      deepStrictEqual(rest, m);
      strictEqual(resolveCase(ds, "b"), join(dir, "cases/b.zarr"));
    }
    const ds = await readDataset(dir);
    strictEqual(ds.cases[2].hasLabel, false);
    await writeDataset(dir, ds); // a read dataset writes back without its root
    ok(!(await Deno.readTextFile(join(dir, "dataset.json"))).includes('"root"'));
    throws(() => resolveCase(ds, "zz"), /no case "zz" in dataset "demo" \(3 cases: a, b, t\)/);
  });
});

Deno.test("dataset.json over HTTP resolves case URLs against the dataset URL", async () => {
  await withTempDir(async (dir) => {
    await writeDataset(join(dir, "ds"), manifest());
    await withStaticServer(dir, async (url) => {
      const ds = await readDataset(`${url}/ds`);
      strictEqual(ds.root, `${url}/ds/`);
      strictEqual(resolveCase(ds, "a"), `${url}/ds/cases/a.zarr`);
      strictEqual((await readDataset(`${url}/ds/dataset.json`)).cases.length, 3);
      await rejects(
        readDataset(`${url}/missing`),
        /cannot fetch .*missing\/dataset\.json: HTTP 404/,
      );
    });
  });
});

Deno.test("dataset.json validation errors name the field", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "dataset.json");
    const bad = async (
      mutate: (m: Record<string, unknown> & DatasetManifest) => void,
      re: RegExp,
    ) => {
      const m = structuredClone(manifest()) as Record<string, unknown> & DatasetManifest;
      mutate(m);
      await Deno.writeTextFile(file, JSON.stringify(m));
      await rejects(readDataset(dir), re);
    };
    await bad(
      (m) => (m.cases[1].split = "training" as "train"),
      /cases\[1\] \("b"\)\.split must be one of train, val, test, got "training"/,
    );
    await bad((m) => (m.format = "x" as "voxseg-dataset"), /format must be "voxseg-dataset"/);
    await bad((m) => (m.classes = ["background"]), /classes must list at least 2 class names/);
    await bad((m) => (m.cases[0].shape = [9, 0, 13]), /cases\[0\] \("a"\)\.shape\[1\] must be > 0/);
    await bad((m) => (m.cases[1].id = "a"), /cases\[1\] \("a"\)\.id is a duplicate/);
    await bad(
      (m) => (m.cases[0].foreground[1][0] = 99),
      /foreground\[1\]\[0\] must be a voxel coordinate inside shape \[9,11,13\]/,
    );
    await bad((m) => (m.cases[0].voxelsPerClass = [1]), /voxelsPerClass must have 3 entries/);
    await bad(
      (m) => delete (m as Partial<DatasetManifest>).intensity,
      /intensity must be an object/,
    );
    await Deno.writeTextFile(file, "{ not json");
    await rejects(readDataset(dir), /dataset\.json is not valid JSON/);
    await Deno.remove(file);
    await rejects(readDataset(dir), /no dataset\.json at .*voxseg convert --raw/);
    await rejects(writeDataset(dir, { ...manifest(), version: 2 as 1 }), /version must be 1/);
  });
});

Deno.test("dataset.json parse errors say where, never what the file holds", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "dataset.json"), "name,mrn,diagnosis\nJane Roe,0042,C34\n");
    await rejects(readDataset(dir), (e: Error) => {
      ok(/dataset\.json is not valid JSON/.test(e.message), e.message);
      ok(!/name,mrn|Jane|0042/.test(e.message), e.message);
      return true;
    });
    await Deno.writeTextFile(join(dir, "dataset.json"), '{"name": "x",, }');
    await rejects(readDataset(dir), /not valid JSON \(at position \d+/);
  });
});

Deno.test("confineTo: case paths must stay inside the folder; without it they may go anywhere", async () => {
  await withTempDir(async (base) => {
    const root = join(base, "root");
    const outside = join(base, "outside");
    await Deno.mkdir(join(root, "ds", "cases", "a.zarr"), { recursive: true });
    await Deno.mkdir(join(outside, "b.zarr"), { recursive: true });
    await Deno.symlink(outside, join(root, "ds", "escape"));
    await Deno.mkdir(join(root, "shared", "c.zarr"), { recursive: true });
    const withPath = async (path: string) => {
      const m = manifest();
      m.cases[1].path = path;
      await writeDataset(join(root, "ds"), m);
    };
    const confined = () => readDataset(join(root, "ds"), { confineTo: root });
    for (
      const [path, why] of [
        ["http://169.254.169.254/latest/meta-data/", /cases\[1\]\.path is a URL/],
        ["https://example.org/b.zarr", /is a URL/],
        ["file:///etc/b.zarr", /is a URL/],
        [join(outside, "b.zarr"), /is an absolute path/],
        ["/etc/passwd", /is an absolute path/],
        ["../../outside/b.zarr", /leaves the data root/],
        ["escape/b.zarr", /resolves \(through a symbolic link\) outside the data root/],
      ] as const
    ) {
      await withPath(path);
      await rejects(confined(), why, path);
      // The CLI keeps its freedom: the same manifest reads without confinement.
      strictEqual((await readDataset(join(root, "ds"))).cases[1].path, path);
    }
    // Relative paths inside the root, "../" within it included, are fine.
    await withPath("../shared/c.zarr");
    const ds = await confined();
    strictEqual(resolveCase(ds, "b"), join(root, "shared", "c.zarr"));
    // A dataset outside the folder, or given as a URL, is refused as a whole.
    await writeDataset(outside, manifest());
    await rejects(readDataset(outside, { confineTo: root }), /outside the data root/);
    await rejects(
      readDataset("http://127.0.0.1:9/ds", { confineTo: root }),
      /not a URL/,
    );
  });
});

Deno.test("defaultSplit: reproducible, proportional, order-independent, keeps one train case", () => {
  const ids = Array.from({ length: 20 }, (_, i) => `case_${String(i).padStart(3, "0")}`);
  const split = defaultSplit(ids, { val: 0.2, test: 0.1, seed: 7 });
  const count = (s: string) => Object.values(split).filter((v) => v === s).length;
  deepStrictEqual([count("train"), count("val"), count("test")], [14, 4, 2]);
  deepStrictEqual(defaultSplit([...ids].reverse(), { val: 0.2, test: 0.1, seed: 7 }), split);
  ok(JSON.stringify(defaultSplit(ids, { seed: 8 })) !== JSON.stringify(split));
  deepStrictEqual(defaultSplit(["only"], { val: 0.5, test: 0.4 }), { only: "train" });
  throws(() => defaultSplit(ids, { val: 0.6, test: 0.5 }), /val \+ test < 1/);
  throws(() => defaultSplit(["a", "a"]), /unique/);
});
