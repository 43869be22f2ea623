/**
 * The access log names who did what — client, token name, route pattern, status, job or model,
 * bytes — and nothing that identifies a patient: no path, file name, query string or DICOM UID,
 * even when the request is full of them. Lines are written off the request path.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { writeNifti } from "../../src/data/nifti.ts";
import { AccessLog, type AccessRecord } from "../../src/server/middleware/access_log/access_log.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { ctVolume, dataRoot, jsonPost, newServer, testOpts, waitForJob } from "./server_fixture.ts";

const PATIENT_DIR = "patients/Doe_John_19610203";
const UID = "1.2.840.113619.2.55.3.604688119.969.1268071029.320";

Deno.test(
  "access log: who read which job, with no patient data in any line",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    await Deno.mkdir(join(root, PATIENT_DIR, UID), { recursive: true });
    const input = `${PATIENT_DIR}/${UID}/ct_Doe_John.nii.gz`;
    await writeNifti(join(root, input), ctVolume());
    const records: AccessRecord[] = [];
    const server = await newServer({
      tokens: new Map([["scanner", "tok-scan"], ["viewer", "tok-view"]]),
      accessLog: { push: (r) => records.push(r) },
    });
    const { app } = server;
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    const read = async (path: string, token?: string) => {
      const res = await app.request(path, { headers: token ? as(token) : {} });
      return { status: res.status, bytes: (await res.arrayBuffer()).byteLength };
    };

    const submitted = await app.request(
      "/v1/jobs/predict",
      jsonPost(
        { model: "tiny", input, output: `${PATIENT_DIR}/${UID}/seg_Doe_John.nii.gz` },
        as("tok-scan"),
      ),
    );
    assert.equal(submitted.status, 202, await submitted.clone().text());
    const job = (await submitted.json()) as Job;
    await waitForJob(server, job.id, ["succeeded"], 300_000);
    const image = await read(`/dashboard/jobs/${job.id}/image`, "tok-view");
    assert.equal(image.status, 200);
    assert.equal((await read(`/v1/jobs/${job.id}/events?after=0`, "tok-view")).status, 200);
    await read(`/v1/jobs?kind=predict&limit=5&q=${encodeURIComponent(input)}`, "tok-view");
    await read(`/v1/models/tiny`, "tok-scan");
    // HEAD: Hono drops the GET body unread; the line is still written, with 0 bytes.
    for (const path of [`/v1/jobs/${job.id}/events`, `/dashboard/jobs/${job.id}/image`]) {
      const head = await app.request(path, { method: "HEAD", headers: as("tok-view") });
      assert.equal(head.status, 200, path);
      assert.equal(head.body, null, path);
    }
    await read(`/v1/jobs/Doe_John_19610203`, "tok-view"); // 404: a name the client typed
    await read(`/dashboard/jobs/${job.id}/labels`); // no token: 401
    await read(`/${PATIENT_DIR}/${UID}`, "tok-view"); // no such route

    const lines = records.map((r) => JSON.stringify(r));
    for (const line of lines) {
      assert.doesNotMatch(line, /Doe|John|19610203|1\.2\.840|nii|patients|\?|limit|kind=/, line);
      assert.ok(!line.includes(root), line);
    }
    const find = (method: string, route: string, status: number) => {
      const r = records.find((r) =>
        r.method === method && r.route === route && r.status === status
      );
      assert.ok(r, `no ${method} ${route} ${status} in\n${lines.join("\n")}`);
      return r;
    };
    const created = find("POST", "/v1/jobs/predict", 202);
    assert.equal(created.token, "scanner");
    assert.equal(created.job, job.id);
    const viewed = find("GET", "/dashboard/jobs/:id/image", 200);
    assert.deepEqual(
      { token: viewed.token, job: viewed.job, bytes: viewed.bytes },
      { token: "viewer", job: job.id, bytes: image.bytes },
    );
    assert.equal(image.bytes, (await Deno.stat(join(root, input))).size);
    assert.ok(find("GET", "/v1/jobs/:id/events", 200).bytes > 0);
    assert.equal(find("GET", "/v1/models/:name", 200).model, "tiny");
    for (const route of ["/v1/jobs/:id/events", "/dashboard/jobs/:id/image"]) {
      const head = find("HEAD", route, 200);
      assert.deepEqual([head.token, head.job, head.bytes], ["viewer", job.id, 0]);
    }
    assert.equal(find("GET", "/v1/jobs/:id", 404).job, undefined);
    assert.equal(find("GET", "/dashboard/jobs/:id/labels", 401).token, null);
    assert.equal(find("GET", "unmatched", 404).token, "viewer");
    for (const r of records) {
      assert.ok(!Number.isNaN(Date.parse(r.time)), r.time);
      assert.equal(typeof r.ms, "number");
    }
  },
);

Deno.test("access log: a stalled writer never holds up a request", testOpts, async () => {
  const stalled = new AccessLog(() => new Promise(() => {}));
  const { app } = await newServer({ accessLog: stalled });
  for (let i = 0; i < 20; i++) {
    const res = await app.request("/healthz");
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
});

Deno.test("AccessLog.file: JSON lines appended in order, readable by the owner only", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "access.jsonl");
    const log = await AccessLog.file(path);
    const record = (i: number): AccessRecord => ({
      time: new Date(0).toISOString(),
      client: "127.0.0.1",
      token: "scanner",
      method: "GET",
      route: "/v1/jobs/:id",
      status: 200,
      job: `j${i}`,
      bytes: i,
      ms: 1,
    });
    for (let i = 0; i < 500; i++) log.push(record(i));
    await log.close();
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines, Array.from({ length: 500 }, (_, i) => record(i)));
    if (Deno.build.os !== "windows") assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
