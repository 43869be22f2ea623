/**
 * `deno bench` over the same loader cases as `voxseg bench loader` (src/cli/bench/loader.ts):
 * 64³ and 96³ patches, batches of 2, 1 and 2 workers, from the compressed synthetic dataset
 * under data/bench-loader (generated on first use, ~10 s). Each iteration opens a loader,
 * waits for its first batch untimed (worker start, module load), then times the next 6: the
 * clock starts while the workers are still busy, so few timed batches are ready beforehand.
 * `voxseg bench loader` gives the steadier patches-per-second figure.
 */

import {
  ensureBenchDataset,
  loaderCases,
  openLoader,
  THROUGHPUT_CACHE_BYTES,
  timeBatches,
} from "../src/cli/bench/loader.ts";

const BATCHES = 6;
const dataset = await ensureBenchDataset();

for (const c of loaderCases()) {
  Deno.bench({
    name: `${c.name} ×${BATCHES} batches`,
    group: `${c.patchSize[0]}³`,
    n: 3,
    warmup: 0,
    async fn(b) {
      const loader = await openLoader(dataset, c, THROUGHPUT_CACHE_BYTES);
      try {
        await loader.next();
        b.start();
        await timeBatches(loader, BATCHES);
        b.end();
      } finally {
        loader.close();
      }
    },
  });
}
