/**
 * DICOM reading benchmark: a 512×512×300 CT series (one file per slice, explicit VR little
 * endian, int16 words with a rescale intercept, file names shuffled) written by the bench with
 * dcmjs into data/bench-dicom (kept), then read to a volume in HU by voxseg
 * (`loadDicomInput` + `readDicomSeries`: files, parse, sort along the normal, geometry,
 * rescale) and converted by Debian's `dcm2niix` (`-z n`, uncompressed NIfTI out) on the same
 * files in the same run; slices per second of each and their ratio. With dcmtk installed, the
 * series is also re-encoded as JPEG lossless (process 14 SV1, the PACS favourite) and timed the
 * same way. Each figure is the median of 3 runs after one warm-up run (the page cache is warm
 * for both readers).
 */

import { join } from "node:path";
import dcmjs from "dcmjs";
import { loadDicomInput, readDicomSeries } from "../../data/dicom/series.ts";
import { newUid } from "../../data/dicom/uid.ts";
import { Random } from "../../base/random.ts";
import { type BenchResult, type BenchSuite, median } from "./suite.ts";

const DIR = "data/bench-dicom";
const SHAPE = [300, 512, 512] as const;
const RUNS = 3;

/** Writes the series unless `dir/explicit` already holds it; returns the folder. */
async function ensureSeries(dir: string): Promise<string> {
  const out = join(dir, "explicit");
  const done = join(dir, "complete");
  if (await Deno.stat(done).then(() => true, () => false)) return out;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(out, { recursive: true });
  const [D, H, W] = SHAPE;
  const study = newUid(), series = newUid(), frame = newUid();
  const random = new Random(0);
  const order = Array.from({ length: D }, (_, k) => k);
  for (let i = D - 1; i > 0; i--) {
    const j = random.int(0, i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const words = new Int16Array(H * W);
  for (let k = 0; k < D; k++) {
    // A body-like ellipse of soft tissue with air around it, varying along z.
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const r = ((x - W / 2) / 200) ** 2 + ((y - H / 2) / 150) ** 2;
        words[x + W * y] = r < 1 ? 1024 + 40 + ((x * 7 + y * 3 + k) % 50) : 24;
      }
    }
    const sop = newUid();
    const dataset = {
      SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
      SOPInstanceUID: sop,
      StudyInstanceUID: study,
      SeriesInstanceUID: series,
      FrameOfReferenceUID: frame,
      Modality: "CT",
      PatientName: "Bench^Series",
      PatientID: "BENCH",
      InstanceNumber: String(k + 1),
      ImagePositionPatient: ["-200", "-180", String(-k * 1.25)],
      ImageOrientationPatient: ["1", "0", "0", "0", "1", "0"],
      PixelSpacing: ["0.78125", "0.78125"],
      SliceThickness: "1.25",
      Rows: H,
      Columns: W,
      SamplesPerPixel: 1,
      PhotometricInterpretation: "MONOCHROME2",
      BitsAllocated: 16,
      BitsStored: 16,
      HighBit: 15,
      PixelRepresentation: 1,
      RescaleIntercept: "-1024",
      RescaleSlope: "1",
      PixelData: words.slice().buffer,
      _vrMap: { PixelData: "OW" },
    };
    const meta = {
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: dataset.SOPClassUID,
      MediaStorageSOPInstanceUID: sop,
      TransferSyntaxUID: "1.2.840.10008.1.2.1",
      ImplementationClassUID: "2.25.153870466359187302434907016426834178337",
    };
    const dictionary = dcmjs.data.DicomMetaDictionary;
    const dict = new dcmjs.data.DicomDict(dictionary.denaturalizeDataset(meta));
    dict.dict = dictionary.denaturalizeDataset(dataset);
    await Deno.writeFile(join(out, `f${order[k].toString(36)}`), new Uint8Array(dict.write()));
  }
  if (await has("dcmcjpeg")) {
    const jpeg = join(dir, "jpeg-lossless");
    await Deno.mkdir(jpeg);
    for await (const e of Deno.readDir(out)) {
      await run("dcmcjpeg", ["+e1", join(out, e.name), join(jpeg, e.name)]);
    }
  }
  await Deno.writeTextFile(done, "");
  return out;
}

async function has(program: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", { args: ["-c", `command -v ${program}`] })
      .output();
    return success;
  } catch {
    return false;
  }
}

async function run(program: string, args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command(program, { args, stdout: "null" }).output();
  if (!success) throw new Error(`${program} failed: ${new TextDecoder().decode(stderr)}`);
}

/** Median seconds of `fn` over {@link RUNS} runs after one warm-up. */
async function time(fn: () => Promise<void>): Promise<number> {
  await fn();
  const seconds: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return median(seconds);
}

async function* runSuite(): AsyncIterable<BenchResult> {
  const explicit = await ensureSeries(DIR);
  const dcm2niix = await has("dcm2niix");
  const syntaxes = [["explicit VR LE", explicit], [
    "JPEG lossless SV1",
    join(DIR, "jpeg-lossless"),
  ]];
  for (const [syntax, folder] of syntaxes) {
    if (!(await Deno.stat(folder).then(() => true, () => false))) continue;
    const voxseg = await time(async () => {
      const series = await readDicomSeries(await loadDicomInput(folder));
      if (series.volume.shape[0] !== SHAPE[0]) throw new Error("the bench series lost slices");
    });
    let peer: number | null = null;
    if (dcm2niix) {
      const out = await Deno.makeTempDir({ prefix: "voxseg-bench-dcm2niix-" });
      try {
        peer = await time(() => run("dcm2niix", ["-z", "n", "-b", "n", "-o", out, folder]));
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    }
    yield {
      name: `dicom/read ${SHAPE[2]}×${SHAPE[1]}×${SHAPE[0]} ${syntax}`,
      voxseg_s: voxseg,
      slices_per_s: SHAPE[0] / voxseg,
      dcm2niix_s: peer,
      dcm2niix_slices_per_s: peer === null ? null : SHAPE[0] / peer,
      ratio_vs_dcm2niix: peer === null ? null : peer / voxseg,
    };
  }
}

export const suite: BenchSuite = {
  summary: "read a 512×512×300 CT series to a volume: slices/s vs dcm2niix",
  run: () => runSuite(),
};
