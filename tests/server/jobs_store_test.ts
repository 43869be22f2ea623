/**
 * The job store without a server: failing writes (a full disk) reject with a path-free
 * message and reach the failure listeners; a torn last line of events.jsonl does not swallow
 * the next event; finished jobs' events leave memory and are read back from disk; an active
 * job keeps only its latest events in memory.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Job } from "../../src/server/jobs/job.ts";
import { JobStore, RECENT_EVENTS, StorageError } from "../../src/server/jobs/store.ts";
import { fillableDisk } from "./jobs_disk.ts";

const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_store_" }));
globalThis.addEventListener("unload", () => Deno.removeSync(base, { recursive: true }));

let dirs = 0;
const stateDir = () => join(base, `state${dirs++}`);

function job(id: string, state: Job["state"] = "queued"): Job {
  return {
    id,
    kind: "predict",
    name: "m",
    state,
    createdAt: new Date().toISOString(),
    request: { model: "m", input: "in.nii", output: "out.nii" },
    attempts: 0,
  };
}

Deno.test("a failing disk: writes reject with a clear, path-free StorageError, listeners hear it, later writes land", async () => {
  const disk = fillableDisk();
  const dir = stateDir();
  const store = await JobStore.open(dir, { files: disk });
  const heard: string[] = [];
  store.onWriteFailure((id, e) => heard.push(`${id}: ${e.code}`));
  await store.create(job("ja"));
  store.append("ja", "state", { state: "queued" });
  await store.flush();
  disk.full = true;
  store.append("ja", "log", { message: "lost half" });
  await assert.rejects(store.save(job("ja", "running")), (e) => {
    assert.ok(e instanceof StorageError);
    assert.equal(e.code, "storage_full");
    assert.match(e.message, /no space left on the device holding the job state; free space/);
    assert.ok(!e.message.includes(base), e.message);
    return true;
  });
  await assert.rejects(store.create(job("jb")), StorageError);
  assert.deepEqual(heard, ["ja: storage_full", "ja: storage_full", "jb: storage_full"]);

  disk.full = false;
  store.append("ja", "log", { message: "after" });
  await store.flush();
  // The half line the failed append left does not swallow the next event.
  const reopened = await JobStore.open(dir);
  const events = await reopened.events("ja");
  assert.deepEqual(events.map((e) => e.id), [1, 3]);
  assert.equal(events[1].data.message, "after");
});

Deno.test("a torn last line of events.jsonl (a crash mid-write) keeps the next event", async () => {
  const dir = stateDir();
  await Deno.mkdir(join(dir, "jt"), { recursive: true });
  await Deno.writeTextFile(join(dir, "jt", "job.json"), JSON.stringify(job("jt", "interrupted")));
  const first = JSON.stringify({ id: 1, type: "state", time: "t", data: { state: "queued" } });
  await Deno.writeTextFile(join(dir, "jt", "events.jsonl"), `${first}\n{"id":2,"type":"pro`);
  const store = await JobStore.open(dir);
  const next = store.append("jt", "state", { state: "queued", resumed: true });
  assert.equal(next.id, 2); // numbering continues after the last whole event
  await store.flush();
  const again = await (await JobStore.open(dir)).events("jt");
  assert.deepEqual(again.map((e) => [e.id, e.data.state]), [[1, "queued"], [2, "queued"]]);
  assert.equal(again[1].data.resumed, true);

  // The same when the torn file is first read through events().
  await Deno.writeTextFile(join(dir, "jt", "events.jsonl"), `${first}\n{"id":2,"ty`);
  const other = await JobStore.open(dir);
  assert.deepEqual((await other.events("jt")).map((e) => e.id), [1]);
  other.append("jt", "log", { message: "x" });
  await other.flush();
  assert.deepEqual((await (await JobStore.open(dir)).events("jt")).map((e) => e.id), [1, 2]);
});

Deno.test("events: finished jobs leave memory once written and are read back from disk", async () => {
  const store = await JobStore.open(stateDir());
  const a = job("jfin");
  await store.create(a);
  for (let i = 0; i < 5; i++) store.append(a.id, "progress", { i });
  assert.equal(store.eventsInMemory, 5);
  // A listener keeps them while it listens, even after the job ends.
  const unsubscribe = store.subscribe(a.id, () => {});
  a.state = "succeeded";
  store.append(a.id, "state", { state: "succeeded" });
  store.release(a.id);
  await store.flush();
  assert.equal(store.eventsInMemory, 6);
  unsubscribe();
  assert.equal(store.eventsInMemory, 0);
  const events = await store.events(a.id);
  assert.deepEqual(events.map((e) => e.id), [1, 2, 3, 4, 5, 6]);
  assert.equal(store.eventsInMemory, 0, "reading a finished job's events does not keep them");
  assert.deepEqual((await store.events(a.id, 4)).map((e) => e.id), [5, 6]);

  // Many finished jobs: memory holds none of their events.
  for (let j = 0; j < 20; j++) {
    const b = job(`jmany${j}`);
    await store.create(b);
    store.append(b.id, "state", { state: "queued" });
    b.state = "failed";
    store.append(b.id, "state", { state: "failed" });
    store.release(b.id);
  }
  await store.flush();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(store.eventsInMemory, 0);
});

Deno.test("events: an active job keeps only its latest events in memory; all are served", async () => {
  const store = await JobStore.open(stateDir());
  const a = job("jlong", "running");
  await store.create(a);
  const n = RECENT_EVENTS * 3 + 7;
  for (let i = 1; i <= n; i++) store.append(a.id, "progress", { step: i });
  assert.equal(store.eventsInMemory, RECENT_EVENTS);
  // Served before the writes land: the disk part plus the recent ones not written yet.
  const early = await store.events(a.id);
  assert.deepEqual(early.map((e) => e.id), Array.from({ length: n }, (_, i) => i + 1));
  await store.flush();
  const all = await store.events(a.id);
  assert.equal(all.length, n);
  assert.equal(all.at(-1)!.data.step, n);
  // An event appended right after events() returned joins the returned array, so a caller
  // that subscribes next misses nothing.
  const seen = await store.events(a.id);
  store.append(a.id, "log", { message: "between" });
  assert.equal(seen.at(-1)!.data.message, "between");
  await store.flush();
  await new Promise((r) => setTimeout(r, 0));
  store.append(a.id, "log", { message: "later" });
  assert.equal(seen.at(-1)!.data.message, "between", "views close after the next macrotask");
  await store.flush();
});
