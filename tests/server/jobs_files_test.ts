/**
 * Prediction jobs and the files they touch, through the server with the tiny model: the
 * output's folder swapped for a symbolic link while the job runs, a file appearing at the
 * output name before the label map is written, and full disks — the job state's (a small
 * tmpfs; skipped where `mount` is not allowed) and the output's.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { writeNifti } from "../../src/data/nifti.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import type { VoxsegServer } from "../../src/server/app.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  testOpts,
  waitForJob,
} from "./server_fixture.ts";

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !ok(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(ok(), `timed out waiting for ${what}`);
}

/** Submits a prediction while the test holds the GPU; resolves once the job waits for it. */
async function heldPrediction(server: VoxsegServer, output: string, input = "files/ct.nii") {
  const lease = await server.context.scheduler.acquire("test");
  const res = await server.app.request(
    "/v1/jobs/predict",
    jsonPost({ model: "tiny", input, output }),
  );
  assert.equal(res.status, 202, await res.clone().text());
  const job = (await res.json()) as Job;
  // Its paths are resolved and its input read by then: it waits for the GPU.
  await until("the job to wait for the GPU", () => server.context.scheduler.queueDepth === 1);
  return { job, lease };
}

/** tmpfs mounts still up; unmounted at exit (before the data root is removed) if a test died. */
const mounts = new Set<string>();
globalThis.addEventListener("unload", () => {
  for (const dir of mounts) {
    new Deno.Command("umount", { args: ["-l", dir], stdout: "null", stderr: "null" }).outputSync();
  }
});

const { root } = await dataRoot();
await writeNifti(join(root, "files", "ct.nii"), ctVolume([8, 16, 16]));
const outside = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_outside_" }));
globalThis.addEventListener("unload", () => Deno.removeSync(outside, { recursive: true }));

Deno.test(
  "the output folder swapped for a link out of the data root while the job runs: nothing is written there",
  testOpts,
  async () => {
    const server = await newServer();
    await Deno.mkdir(join(root, "swap", "p"), { recursive: true });
    const { job, lease } = await heldPrediction(server, "swap/p/seg.nii.gz");
    await Deno.rename(join(root, "swap", "p"), join(root, "swap", "p-moved"));
    await Deno.symlink(outside, join(root, "swap", "p"));
    lease.release();
    const failed = await waitForJob(server, job.id, ["failed", "succeeded"]);
    assert.equal(failed.error?.code, "path_changed", JSON.stringify(failed.error));
    assert.match(failed.error!.message, /"swap\/p\/seg\.nii\.gz" changed since it was checked/);
    assert.deepEqual([...Deno.readDirSync(outside)], []);
    assert.deepEqual([...Deno.readDirSync(join(root, "swap", "p-moved"))], []);
  },
);

Deno.test(
  "a file that appears at the output name before the write is kept; the label map route serves only what the job wrote",
  testOpts,
  async () => {
    const server = await newServer();
    const { job, lease } = await heldPrediction(server, "files/late.nii");
    await Deno.writeTextFile(join(root, "files", "late.nii"), "precious");
    lease.release();
    const failed = await waitForJob(server, job.id, ["failed", "succeeded"]);
    assert.equal(failed.error?.code, "output_exists", JSON.stringify(failed.error));
    assert.equal(await Deno.readTextFile(join(root, "files", "late.nii")), "precious");

    // A job that wrote its label map: served, until the file is replaced.
    const ok = (await (await server.app.request(
      "/v1/jobs/predict",
      jsonPost({ model: "tiny", input: "files/ct.nii", output: "files/ok_seg.nii" }),
    )).json()) as Job;
    const done = await waitForJob(server, ok.id, ["succeeded", "failed"]);
    assert.equal(done.state, "succeeded", JSON.stringify(done.error));
    assert.equal(done.wrote?.path, "files/ok_seg.nii");
    const labels = await server.app.request(`/dashboard/jobs/${ok.id}/labels`);
    assert.equal(labels.status, 200);
    await labels.body?.cancel();
    await Deno.remove(join(root, "files", "ok_seg.nii"));
    await Deno.copyFile(join(root, "files", "ct.nii"), join(root, "files", "ok_seg.nii"));
    await assertError(
      await server.app.request(`/dashboard/jobs/${ok.id}/labels`),
      409,
      "output_changed",
    );
  },
);

/** Mounts a tmpfs of `kib` KiB at `dir`; false where this machine does not allow it. */
async function mountTmpfs(dir: string, kib: number): Promise<boolean> {
  await Deno.mkdir(dir, { recursive: true });
  try {
    const { success } = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${kib}k`, "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).output();
    if (success) mounts.add(dir);
    return success;
  } catch {
    return false;
  }
}

async function umount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
  mounts.delete(dir);
}

/** Fills the file system holding `dir` (a tmpfs) with one file; returns its path. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, "filler");
  const file = await Deno.open(path, { write: true, create: true });
  try {
    while (true) await file.write(new Uint8Array(4096));
  } catch (e) {
    assert.equal((e as { code?: string }).code, "ENOSPC");
  } finally {
    file.close();
  }
  return path;
}

const probe = await Deno.makeTempDir({ prefix: "voxseg_tmpfs_probe_" });
const canMount = await mountTmpfs(probe, 64);
if (canMount) await umount(probe);
await Deno.remove(probe);

Deno.test({
  name:
    "full disks (tmpfs): the job fails saying so, the server keeps answering, the next job runs",
  ignore: !canMount,
  ...testOpts,
  fn: async () => {
    const stateDir = await Deno.makeTempDir({ prefix: "voxseg_state_tmpfs_" });
    const fullDir = join(root, "fulldisk");
    assert.ok(await mountTmpfs(stateDir, 512));
    assert.ok(await mountTmpfs(fullDir, 64));
    const server = await newServer({ stateDir });
    try {
      // The job state's disk fills while a job waits for the GPU and another is queued.
      const { job: first, lease } = await heldPrediction(server, "files/full_a.nii");
      const job = (await (await server.app.request(
        "/v1/jobs/predict",
        jsonPost({ model: "tiny", input: "files/ct.nii", output: "files/full_b.nii" }),
      )).json()) as Job;
      const filler = await fill(stateDir);
      lease.release();
      // The first may finish before its events outgrow the space left in their file's last
      // page (only its final record is then lost); the second cannot even record its start.
      const a = await waitForJob(server, first.id, ["failed", "succeeded"]);
      if (a.state === "failed") assert.equal(a.error?.code, "storage_full");
      const failed = await waitForJob(server, job.id, ["failed", "succeeded"]);
      assert.deepEqual(failed.error, {
        code: "storage_full",
        message: "no space left on the device holding the job state; free space and resume the job",
      });
      assert.equal((await server.app.request("/healthz")).status, 200);
      const listed = (await (await server.app.request("/v1/jobs")).json()).jobs as Job[];
      assert.equal(listed.find((j) => j.id === job.id)!.state, "failed");
      await assertError(
        await server.app.request(
          "/v1/jobs/predict",
          jsonPost({ model: "tiny", input: "files/ct.nii", output: "files/full_d.nii" }),
        ),
        507,
        "insufficient_storage",
      );

      // Space freed: the next job runs, and the failed one resumes.
      await Deno.remove(filler);
      const next = (await (await server.app.request(
        "/v1/jobs/predict",
        jsonPost({ model: "tiny", input: "files/ct.nii", output: "files/full_c.nii" }),
      )).json()) as Job;
      assert.equal((await waitForJob(server, next.id, ["succeeded", "failed"])).state, "succeeded");
      assert.equal(
        (await server.app.request(`/v1/jobs/${job.id}/resume`, { method: "POST" })).status,
        202,
      );
      assert.equal((await waitForJob(server, job.id, ["succeeded", "failed"])).state, "succeeded");

      // The output's disk is full: the job fails saying which file could not be written.
      await fill(fullDir);
      const out = (await (await server.app.request(
        "/v1/jobs/predict",
        jsonPost({ model: "tiny", input: "files/ct.nii", output: "fulldisk/seg.nii" }),
      )).json()) as Job;
      const outFailed = await waitForJob(server, out.id, ["failed", "succeeded"]);
      assert.deepEqual(outFailed.error, {
        code: "output_write_failed",
        message: 'no space left on the device holding the output "fulldisk/seg.nii"; free ' +
          "space and resume the job",
      });
      assert.deepEqual(
        [...Deno.readDirSync(fullDir)].map((e) => e.name),
        ["filler"],
        "no temporary file is left behind",
      );
      assert.equal((await server.app.request("/healthz")).status, 200);
    } finally {
      await server.shutdown();
      await umount(stateDir);
      await umount(fullDir);
      await Deno.remove(stateDir, { recursive: true });
      await Deno.remove(fullDir, { recursive: true });
    }
  },
});
