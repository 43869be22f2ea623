/**
 * DELETE /v1/jobs/{id}?purge=true and `serve --retain`, on job records written straight to
 * the state folder (no GPU): what a purge removes, what it refuses to remove, the purge asked
 * for before a restart, and the retention sweep on an injected clock.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { assertError } from "./server_fixture.ts";
import { captureLogs, exists, newBox, openBox, writeFinishedPredictJob } from "./pacs_fixture.ts";

const DAY = 86400e3;
const purge = (id: string, value = "true") =>
  [`/v1/jobs/${id}?purge=${value}`, {
    method: "DELETE",
  }] as const;

Deno.test("purge: a finished prediction's label map, folder and record go; it leaves the list", async () => {
  const { server, root, stateDir } = await newBox();
  const id = "jdone-00000001";
  await writeFinishedPredictJob(root, stateDir, {
    id,
    finishedAt: new Date().toISOString(),
    output: "out/a_seg.nii",
  });
  const { server: app } = await openBox(root, stateDir); // the record is read at start
  assert.equal((await (await app.app.request("/v1/jobs")).json()).jobs.length, 1);
  const { value: res, lines } = await captureLogs(() => app.app.request(...purge(id)));
  assert.equal(res.status, 200);
  const report = await res.json();
  assert.deepEqual(report, {
    id,
    purged: true,
    cancelled: false,
    removed: { outputs: 1, pulledFiles: 0, runFiles: 0, record: true },
    kept: [],
  });
  assert.equal(await exists(join(root, "out/a_seg.nii")), false);
  assert.equal(await exists(join(stateDir, id)), false);
  assert.deepEqual((await (await app.app.request("/v1/jobs")).json()).jobs, []);
  await assertError(await app.app.request(`/v1/jobs/${id}`), 404, "job_not_found");
  await assertError(await app.app.request(...purge(id)), 404, "job_not_found");
  assert.deepEqual(lines, [`voxseg serve: purged job ${id} (requested)`]);
  assert.ok(!JSON.stringify(report).includes(root));
  await app.shutdown();
  await server.shutdown();
});

Deno.test("purge keeps an output replaced since, or now behind a symbolic link, and says so", async () => {
  const { server, root, stateDir } = await newBox();
  await server.shutdown();
  const now = new Date().toISOString();
  await writeFinishedPredictJob(root, stateDir, {
    id: "jrepl-1",
    finishedAt: now,
    output: "o/r.nii",
  });
  await writeFinishedPredictJob(root, stateDir, {
    id: "jlink-1",
    finishedAt: now,
    output: "o/l.nii",
  });
  // Replaced: a new file under the same name (another inode, size).
  await Deno.remove(join(root, "o/r.nii"));
  await Deno.writeTextFile(join(root, "o/r.nii"), "someone else's, newer label map");
  // Linked: the name now points at a file outside the data root.
  const outside = await Deno.makeTempFile({ prefix: "voxseg_outside_" });
  await Deno.writeTextFile(outside, "not the server's to delete");
  await Deno.remove(join(root, "o/l.nii"));
  await Deno.symlink(outside, join(root, "o/l.nii"));

  const { server: app } = await openBox(root, stateDir);
  for (const [id, reason] of [["jrepl-1", "replaced"], ["jlink-1", "moved"]]) {
    const res = await app.app.request(...purge(id));
    assert.equal(res.status, 200);
    const report = await res.json();
    assert.equal(report.removed.outputs, 0);
    assert.equal(report.removed.record, true);
    assert.equal(report.kept.length, 1);
    assert.equal(report.kept[0].reason, reason);
    assert.match(report.kept[0].message, /left in place/);
  }
  assert.equal(await Deno.readTextFile(join(root, "o/r.nii")), "someone else's, newer label map");
  assert.equal(await Deno.readTextFile(outside), "not the server's to delete");
  assert.ok((await Deno.lstat(join(root, "o/l.nii"))).isSymlink);
  assert.deepEqual((await (await app.app.request("/v1/jobs")).json()).jobs, []);
  await Deno.remove(outside);
  await app.shutdown();
});

Deno.test("DELETE: purge must be true or false; without it a finished job is still 409", async () => {
  const { server, root, stateDir } = await newBox();
  await server.shutdown();
  const id = "jkeep-1";
  await writeFinishedPredictJob(root, stateDir, {
    id,
    finishedAt: new Date().toISOString(),
    output: "o/k.nii",
  });
  const { server: app } = await openBox(root, stateDir);
  for (const bad of ["yes", "1", "", "TRUE"]) {
    assert.match(
      await assertError(await app.app.request(...purge(id, bad)), 400, "invalid_request"),
      /purge must be true or false/,
    );
  }
  await assertError(await app.app.request(...purge(id, "false")), 409, "job_finished");
  await assertError(
    await app.app.request(`/v1/jobs/${id}`, { method: "DELETE" }),
    409,
    "job_finished",
  );
  assert.ok(await exists(join(root, "o/k.nii")));
  assert.ok(await exists(join(stateDir, id, "job.json")));
  const doc = await (await app.app.request("/openapi.json")).json();
  const del = doc.paths["/v1/jobs/{id}"].delete;
  assert.ok(del.parameters.some((p: { name: string }) => p.name === "purge"));
  assert.match(del.description, /purge=true/);
  await app.shutdown();
});

Deno.test("a purge asked for while the job ran completes at the next start when the server stopped first", async () => {
  const { server, root, stateDir } = await newBox();
  await server.shutdown();
  const id = "jstop-1";
  const job = await writeFinishedPredictJob(root, stateDir, {
    id,
    finishedAt: new Date().toISOString(),
    output: "o/s.nii",
  });
  // As the runner leaves it when the process dies before the job stopped.
  const running = { ...job, state: "running", purgeRequestedAt: job.finishedAt };
  delete (running as Partial<typeof job>).finishedAt;
  await Deno.writeTextFile(join(stateDir, id, "job.json"), JSON.stringify(running));
  const { value: box, lines } = await captureLogs(() => openBox(root, stateDir));
  assert.deepEqual(box.server.context.store.list(), []);
  assert.equal(await exists(join(stateDir, id)), false);
  assert.equal(await exists(join(root, "o/s.nii")), false);
  assert.deepEqual(lines, [`voxseg serve: purged job ${id} (requested before a restart)`]);
  await box.server.shutdown();
});

Deno.test("--retain: old finished jobs are purged at start and by the sweep; recent and interrupted ones wait", async () => {
  const { server, root, stateDir } = await newBox();
  await server.shutdown();
  let t = Date.parse("2030-01-20T00:00:00Z");
  const ago = (ms: number) => new Date(t - ms).toISOString();
  await writeFinishedPredictJob(root, stateDir, {
    id: "jold-1",
    finishedAt: ago(8 * DAY),
    output: "o/old.nii",
  });
  await writeFinishedPredictJob(root, stateDir, {
    id: "jcancel-1",
    state: "cancelled",
    finishedAt: ago(30 * DAY),
  });
  await writeFinishedPredictJob(root, stateDir, {
    id: "jrecent-1",
    state: "failed",
    finishedAt: ago(1 * DAY),
  });
  // Interrupted long ago, while the server was down: resumable for 7 days from this start.
  await writeFinishedPredictJob(root, stateDir, {
    id: "jintr-1",
    state: "interrupted",
    finishedAt: ago(30 * DAY),
  });
  const { value: box, lines } = await captureLogs(() =>
    openBox(root, stateDir, { retainMs: 7 * DAY, now: () => t })
  );
  const ids = () => box.server.context.store.list().map((j) => j.id).sort();
  assert.deepEqual(ids(), ["jintr-1", "jrecent-1"]);
  assert.equal(await exists(join(root, "o/old.nii")), false);
  assert.equal(await exists(join(stateDir, "jold-1")), false);
  assert.deepEqual(lines.sort(), [
    "voxseg serve: purged job jcancel-1 (retention)",
    "voxseg serve: purged job jold-1 (retention)",
  ]);

  t += 5 * DAY; // the failed job is 6 days old, the interrupted one 5 days since the start
  assert.deepEqual(await box.server.retention!.sweep(), []);
  t += 3 * DAY;
  const { value: purged } = await captureLogs(() => box.server.retention!.sweep());
  assert.deepEqual(purged.sort(), ["jintr-1", "jrecent-1"]);
  assert.deepEqual(ids(), []);
  await box.server.shutdown();
});

Deno.test("without --retain nothing is purged, however old", async () => {
  const { server, root, stateDir } = await newBox();
  await server.shutdown();
  await writeFinishedPredictJob(root, stateDir, {
    id: "jancient-1",
    finishedAt: "2001-01-01T00:00:00.000Z",
    output: "o/a.nii",
  });
  const box = await openBox(root, stateDir);
  assert.equal(box.server.retention, undefined);
  assert.deepEqual(box.server.context.store.list().map((j) => j.id), ["jancient-1"]);
  assert.ok(await exists(join(root, "o/a.nii")));
  await box.server.shutdown();
});
