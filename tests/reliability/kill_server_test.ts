/**
 * Fault injection through the server: a training job is submitted to `voxseg serve`, the
 * server is killed with SIGKILL at 5 seeded moments (after steps, or while a checkpoint is
 * committed), restarted on the same state folder, and the job resumed with
 * POST /v1/jobs/{id}/resume; its final weights must equal an uninterrupted `voxseg train` run's
 * (same config) bit for bit.
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
  startServer,
  tinyConfig,
  tinyDataset,
  until,
  voxseg,
  workspace,
} from "./fixture.ts";

const KILLS = 5;
const SEED = 7;

async function call(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

Deno.test({
  name: `a training job survives ${KILLS} kill -9s of its server and ends bit-identical`,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const t0 = performance.now();
    const { dir, env } = await workspace("voxseg-kill-server-");
    let passed = false;
    try {
      const root = join(dir, "root");
      const data = await tinyDataset(join(root, "ds"), env);
      const config = tinyConfig(2, 10);
      const straight = join(dir, "straight");
      // A server job with "plan": "none" trains the config it is given, unplanned: so does the
      // reference run.
      await voxseg(
        [
          "train",
          "--data",
          data,
          "--plan",
          "none",
          ...asFlags(config),
          "--out",
          straight,
          "--json",
        ],
        env,
      );

      const serverArgs = [
        "--data-root",
        root,
        "--state",
        join(dir, "state"),
        "--access-log",
        "off",
      ];
      let server = await startServer(serverArgs, env);
      const submitted = await call(server.base, "POST", "/v1/jobs/train", {
        dataset: "ds",
        plan: "none",
        config,
        name: "tiny",
      });
      assert.equal(submitted.status, 202, JSON.stringify(submitted.json));
      const id: string = submitted.json.id;
      const runDir = join(dir, "state", id, "run");
      const random = new Random(SEED);
      let inCommit = 0;
      for (let kill = 0; kill < KILLS; kill++) {
        const before = await committedGeneration(runDir);
        const steps = random.int(1, 4);
        const delay = random.uniform(0, 200);
        const duringCommit = random.next() < 0.4;
        const progressed = await until(
          async () => (await committedGeneration(runDir)) >= before + steps,
          300_000,
        );
        assert.ok(progressed, `no progress before kill ${kill + 1}:\n${server.output()}`);
        if (duringCommit) {
          await until(() => committing(runDir), 60_000, 1);
          inCommit++;
        } else {
          await sleep(delay);
        }
        const job = await call(server.base, "GET", `/v1/jobs/${id}`);
        assert.equal(job.json.state, "running", `the job ended before kill ${kill + 1}`);
        await kill9(server.child);
        server = await startServer(serverArgs, env);
        const interrupted = await call(server.base, "GET", `/v1/jobs/${id}`);
        assert.equal(interrupted.json.state, "interrupted", JSON.stringify(interrupted.json));
        const resumed = await call(server.base, "POST", `/v1/jobs/${id}/resume`);
        assert.equal(resumed.status, 202, JSON.stringify(resumed.json));
      }
      let state = "";
      await until(
        async () => {
          state = (await call(server.base, "GET", `/v1/jobs/${id}`)).json.state;
          return state !== "queued" && state !== "running";
        },
        600_000,
        250,
      );
      const final = await call(server.base, "GET", `/v1/jobs/${id}`);
      await kill9(server.child);
      assert.equal(state, "succeeded", `${JSON.stringify(final.json)}\n${server.output()}`);
      assert.equal(final.json.result.steps, 20);
      for (const file of ["last.safetensors", "best.safetensors"]) {
        assert.deepEqual(
          await differingTensors(join(straight, file), join(runDir, file)),
          [],
          `${file}: tensors differ from the uninterrupted run's`,
        );
      }
      const seconds = Math.round((performance.now() - t0) / 1000);
      console.log(JSON.stringify({ test: "kill_server", kills: KILLS, inCommit, seconds }));
      passed = true;
    } finally {
      // A failure keeps the state folder for a look.
      if (passed) await Deno.remove(dir, { recursive: true });
    }
  },
});
