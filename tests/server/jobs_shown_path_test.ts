import assert from "node:assert/strict";
import { join } from "node:path";
import { shownPath } from "../../src/server/jobs/train_job.ts";
import { JobStore } from "../../src/server/jobs/store.ts";
import { DataRoot } from "../../src/server/paths.ts";

Deno.test("a training job's checkpoint path never shows where the state folder lives", async () => {
  const tmp = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_shown_" }));
  try {
    const root = await DataRoot.open(join(tmp, "data"));
    const inside = await JobStore.open(join(root.real, ".voxseg", "jobs"));
    const outside = await JobStore.open(join(tmp, "state"));
    const file = (store: JobStore) => join(store.runDir("j1"), "best.safetensors");
    assert.equal(
      shownPath(file(inside), { root, store: inside }),
      join(".voxseg", "jobs", "j1", "run", "best.safetensors"),
    );
    const shown = shownPath(file(outside), { root, store: outside });
    assert.equal(shown, join("j1", "run", "best.safetensors"));
    assert.ok(!shown.includes(tmp));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
