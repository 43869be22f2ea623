/**
 * Fault injection on `voxseg train`: the process is killed with SIGKILL at 20 seeded moments
 * (during start-up, after it has taken steps, and while it commits a checkpoint) and resumed
 * with `--resume` each time; the run's final weights must equal an uninterrupted run's bit for
 * bit. Each kill's moment is drawn from a seeded generator; what the process was doing then
 * depends on timing, so the test counts how many kills cut a checkpoint write in half.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Random } from "../../src/base/random.ts";
import {
  asFlags,
  committedGeneration,
  committing,
  differingTensors,
  kill9,
  sleep,
  spawnVoxseg,
  tinyConfig,
  tinyDataset,
  until,
  voxseg,
  workspace,
} from "./fixture.ts";

const KILLS = 20;
const SEED = 20261207;

/** Reads a child's stdout and stderr to the end (so no pipe fills); resolves with the text. */
async function collect(child: Deno.ChildProcess): Promise<string> {
  let text = "";
  const read = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  await Promise.all([read(child.stdout), read(child.stderr)]);
  return text;
}

Deno.test({
  name: `kill -9 of voxseg train at ${KILLS} seeded moments, resumed each time, ends bit-identical`,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const t0 = performance.now();
    const { dir, env } = await workspace("voxseg-kill-train-");
    let passed = false;
    try {
      const data = await tinyDataset(join(dir, "ds"), env);
      // 3 epochs × 12 steps, a validation after each epoch, the state written after every step.
      const args = ["train", "--data", data, ...asFlags(tinyConfig(3, 12)), "--json"];
      const straight = join(dir, "straight");
      await voxseg([...args, "--out", straight], env);

      const out = join(dir, "killed");
      const random = new Random(SEED);
      const counts = { kills: 0, atStart: 0, afterSteps: 0, inCommit: 0, leftHalfCommitted: 0 };
      for (let life = 0;; life++) {
        const child = spawnVoxseg(
          [...args, "--out", out, ...(life ? ["--resume"] : [])],
          env,
          "piped",
        );
        const output = collect(child);
        let exited = false;
        child.status.then(() => (exited = true));
        if (counts.kills === KILLS) {
          const status = await child.status;
          assert.ok(status.success, `the last resume failed:\n${await output}`);
          break;
        }
        const before = await committedGeneration(out);
        const mode = random.next();
        if (mode < 0.3) {
          // Any moment of start-up: reading run.json, the checkpoint, compiling pipelines.
          await sleep(random.uniform(100, 4000));
          counts.atStart++;
        } else if (mode < 0.65) {
          // After 1–3 more steps were committed, a little later: mid-step or mid-validation.
          const steps = random.int(1, 4);
          const delay = random.uniform(0, 150);
          await until(
            async () => exited || (await committedGeneration(out)) >= before + steps,
            300_000,
          );
          await sleep(delay);
          counts.afterSteps++;
        } else {
          // While a checkpoint is being committed (a temp or generation file is on disk).
          await until(async () => exited || (await committedGeneration(out)) > before, 300_000);
          await until(() => exited || committing(out), 60_000, 1);
          counts.inCommit++;
        }
        if (exited) {
          const status = await child.status;
          const state = [...Deno.readDirSync(out)].map((e) => e.name).sort().join(", ");
          assert.fail(
            `life ${life} ended by itself (exit ${status.code}) before kill ${counts.kills + 1}: ` +
              `${status.success ? "the run finished; give it more steps" : await output}\n` +
              `run folder: ${state}`,
          );
        }
        await kill9(child);
        const text = await output;
        if (/error/i.test(text)) console.log(`life ${life}:\n${text}`);
        counts.kills++;
        if (committing(out)) counts.leftHalfCommitted++;
      }

      for (const file of ["last.safetensors", "best.safetensors"]) {
        assert.deepEqual(
          await differingTensors(join(straight, file), join(out, file)),
          [],
          `${file}: tensors differ from the uninterrupted run's`,
        );
      }
      const seconds = (performance.now() - t0) / 1000;
      console.log(JSON.stringify({ test: "kill_train", ...counts, seconds: Math.round(seconds) }));
      passed = true;
    } finally {
      // A failure keeps the run folders for a look.
      if (passed) await Deno.remove(dir, { recursive: true });
    }
  },
});
