/**
 * Server mode reads a dataset confined to its data root: the server checks dataset.json when
 * the job starts, and the trainer and the loader read it again. A manifest rewritten between
 * the check and the run to point a case outside the root must be refused by those reads too.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { createLoader } from "../../src/data/loader.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/trainer.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test(
  "confineTo: the trainer and the loader refuse a dataset.json rewritten to leave the root",
  opts,
  async () => {
    const tmp = await Deno.makeTempDir({ prefix: "voxseg_confine_test_" });
    try {
      const root = join(tmp, "root");
      const ds = join(root, "ds");
      await generateSynthDataset(ds, { cases: 2, shape: [8, 16, 16], val: 0, test: 0 });
      const realRoot = await Deno.realPath(root);
      // The server's check passes, and a loader confined to the root opens the dataset.
      await readDataset(ds, { confineTo: realRoot });
      const loaderOptions = {
        dataset: ds,
        patchSize: [8, 16, 16] as [number, number, number],
        batchSize: 1,
        workers: 0,
        seed: 0,
        confineTo: realRoot,
      };
      (await createLoader(loaderOptions)).close();

      // Between the check and the run: a copy of the first case outside the root, and the
      // manifest rewritten to point there.
      const file = join(ds, "dataset.json");
      const manifest = JSON.parse(await Deno.readTextFile(file));
      const first = manifest.cases[0];
      await Deno.mkdir(join(tmp, "outside"));
      await copyTree(join(ds, first.path), join(tmp, "outside", "case"));
      first.path = "../../outside/case";
      await Deno.writeTextFile(file, JSON.stringify(manifest, null, 2));
      // Unconfined (the CLI), the rewritten manifest is a valid dataset: only confinement refuses.
      assert.equal((await readDataset(ds)).cases[0].path, "../../outside/case");

      await assert.rejects(createLoader(loaderOptions), /cases\[0\]\.path leaves the data root/);
      const config = resolveConfig(undefined, {
        "data.dataset": ds,
        out: join(root, "run"),
        "model.baseChannels": "2",
        "model.depth": "1",
        "model.classes": String(manifest.classes.length),
        "data.patchSize": "8,16,16",
        "data.batchSize": "1",
        "data.workers": "0",
        epochs: "1",
        itersPerEpoch: "1",
      });
      await assert.rejects(
        train({ config, confineTo: realRoot }),
        /cases\[0\]\.path leaves the data root/,
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

async function copyTree(from: string, to: string): Promise<void> {
  const info = await Deno.stat(from);
  if (info.isFile) return await Deno.copyFile(from, to);
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) await copyTree(join(from, e.name), join(to, e.name));
}
