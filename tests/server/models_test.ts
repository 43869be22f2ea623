import assert from "node:assert/strict";
import { join } from "node:path";
import { gzip, isGzip } from "../../src/data/gzip.ts";
import { decodeNifti, encodeNifti } from "../../src/data/nifti.ts";
import { QueueFullError } from "../../src/server/scheduler.ts";
import { hidePaths } from "../../src/server/models.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  newServer,
  niftiBytes,
  PATCH,
  saveTinyCheckpoint,
  SPACING,
  testOpts,
} from "./server_fixture.ts";

const octet = { "content-type": "application/octet-stream" };
const predict = (body: BodyInit, headers: Record<string, string> = octet, query = "") => ({
  url: `/v1/models/tiny/predict${query}`,
  init: { method: "POST", body, headers } as RequestInit,
});

Deno.test(
  "GET /v1/models and /v1/models/{name}: checkpoints with their metadata",
  testOpts,
  async () => {
    const { app } = await newServer();
    const list = await (await app.request("/v1/models")).json();
    const tiny = list.models.find((m: { name: string }) => m.name === "tiny");
    assert.equal(tiny.source, "models-dir");
    assert.deepEqual(tiny.classes, ["background", "lung", "infection"]);
    assert.ok(tiny.sizeBytes > 0);
    assert.equal(tiny.meta, undefined, "the list leaves the metadata to the detail route");
    const detail = await (await app.request("/v1/models/tiny")).json();
    assert.deepEqual(detail.meta.patchSize, PATCH);
    assert.deepEqual(detail.meta.spacingMm, SPACING);
    assert.equal(detail.meta.model.baseChannels, 4);
    assert.match(
      await assertError(await app.request("/v1/models/nope"), 404, "model_not_found"),
      /nope/,
    );
  },
);

Deno.test("a checkpoint copied into --models is served without a restart", testOpts, async () => {
  const { app } = await newServer();
  const { models } = await dataRoot();
  await assertError(await app.request("/v1/models/late"), 404, "model_not_found");
  await Deno.mkdir(join(models, "late"));
  await saveTinyCheckpoint(join(models, "late", "best.safetensors"), 1);
  const detail = await app.request("/v1/models/late");
  assert.equal(detail.status, 200);
  // A broken file is listed with the reason, and predicting with it is 422.
  await Deno.writeTextFile(join(models, "broken.safetensors"), "not a checkpoint");
  const broken = (await (await app.request("/v1/models")).json()).models
    .find((m: { name: string }) => m.name === "broken");
  assert.match(broken.error, /checkpoint/);
  const { root } = await dataRoot();
  assert.ok(!broken.error.includes(root), `the listing shows where files live: ${broken.error}`);
  const res = await app.request("/v1/models/broken/predict", {
    method: "POST",
    body: await niftiBytes(ctVolume()),
    headers: octet,
  });
  const body = await res.clone().text();
  assert.ok(!body.includes(root), `the 422 shows where files live: ${body}`);
  await assertError(res, 422, "invalid_model");
  await Deno.remove(join(models, "broken.safetensors"));
  await Deno.remove(join(models, "late"), { recursive: true });
});

Deno.test(
  "POST predict: .nii in → uint8 label map with the input's geometry",
  testOpts,
  async () => {
    const { app } = await newServer();
    const volume = ctVolume();
    const { url, init } = predict(await niftiBytes(volume));
    const res = await app.request(url, init);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.equal(res.headers.get("x-voxseg-model"), "tiny");
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(isGzip(bytes), false);
    const labels = await decodeNifti(bytes);
    assert.deepEqual(labels.shape, volume.shape);
    assert.ok(labels.data instanceof Uint8Array);
    labels.spacingMm.forEach((s, i) => assert.ok(Math.abs(s - SPACING[i]) < 1e-5));
    labels.affine.forEach((v, i) =>
      assert.ok(Math.abs(v - volume.affine[i]) < 1e-4, `affine ${i}`)
    );
    assert.ok((labels.data as Uint8Array).every((c) => c < 3));
  },
);

Deno.test(
  "POST predict: .nii.gz in → .nii.gz out; Accept JSON → per-class voxels and mL",
  testOpts,
  async () => {
    const { app } = await newServer();
    const volume = ctVolume([16, 16, 16]);
    const gz = await niftiBytes(volume, true);
    const res = await app.request(
      "/v1/models/tiny/predict?overlap=0.25&precision=f16",
      { method: "POST", body: gz, headers: { "content-type": "application/gzip" } },
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/gzip");
    const out = new Uint8Array(await res.arrayBuffer());
    assert.ok(isGzip(out));
    assert.deepEqual((await decodeNifti(out)).shape, volume.shape);

    const summary = await (await app.request("/v1/models/tiny/predict?tta=true", {
      method: "POST",
      body: gz,
      headers: { "content-type": "application/x-nifti-gz", accept: "application/json" },
    })).json();
    assert.equal(summary.model, "tiny");
    assert.deepEqual(summary.shape, volume.shape);
    assert.deepEqual(summary.classes.map((c: { name: string }) => c.name), [
      "background",
      "lung",
      "infection",
    ]);
    const voxels = summary.classes.reduce((a: number, c: { voxels: number }) => a + c.voxels, 0);
    assert.equal(voxels, 16 ** 3);
    const voxelMl = SPACING[0] * SPACING[1] * SPACING[2] / 1000;
    for (const c of summary.classes) assert.ok(Math.abs(c.volumeMl - c.voxels * voxelMl) < 1e-6);
  },
);

Deno.test(
  "POST predict: wrong content type 415, malformed NIfTI 400, bad query 400",
  testOpts,
  async () => {
    const { app } = await newServer();
    const good = await niftiBytes(ctVolume());
    let r = predict(good, { "content-type": "text/plain" });
    await assertError(await app.request(r.url, r.init), 415, "unsupported_media_type");
    r = predict(good, {});
    await assertError(await app.request(r.url, r.init), 415, "unsupported_media_type");
    r = predict(new Uint8Array(500).fill(7));
    assert.match(
      await assertError(await app.request(r.url, r.init), 400, "invalid_nifti"),
      /header size/,
    );
    r = predict(good.slice(0, 1000));
    assert.match(
      await assertError(await app.request(r.url, r.init), 400, "invalid_nifti"),
      /truncated/,
    );
    r = predict(new Uint8Array(0));
    assert.match(
      await assertError(await app.request(r.url, r.init), 400, "invalid_nifti"),
      /empty/,
    );
    r = predict(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), { "content-type": "application/gzip" });
    assert.match(await assertError(await app.request(r.url, r.init), 400, "invalid_nifti"), /gzip/);
    r = predict(good, octet, "?overlap=2");
    await assertError(await app.request(r.url, r.init), 400, "invalid_request");
    r = predict(good, octet, "?tta=maybe");
    await assertError(await app.request(r.url, r.init), 400, "invalid_request");
    r = predict(good, octet, "?precision=bf16");
    assert.match(
      await assertError(await app.request(r.url, r.init), 400, "invalid_request"),
      /precision must be one of f32, f16/,
    );
    // NaN voxels are the input's fault: 400 with the voxel named.
    const nan = { ...ctVolume(), data: new Float32Array(12 * 20 * 24).fill(NaN) };
    r = predict(encodeNifti(nan) as Uint8Array<ArrayBuffer>);
    assert.match(await assertError(await app.request(r.url, r.init), 400, "invalid_volume"), /NaN/);
  },
);

Deno.test(
  "POST predict: unknown model 404, body over the limit 413, token 401",
  testOpts,
  async () => {
    const { app } = await newServer({ token: "s3cret", maxBodyBytes: 4096 });
    const body = await niftiBytes(ctVolume());
    const auth = { ...octet, authorization: "Bearer s3cret" };
    await assertError(
      await app.request("/v1/models/tiny/predict", { method: "POST", body, headers: octet }),
      401,
      "unauthorized",
    );
    await assertError(
      await app.request("/v1/models/tiny/predict", {
        method: "POST",
        body,
        headers: { ...auth, authorization: "Bearer nope" },
      }),
      401,
      "unauthorized",
    );
    await assertError(
      await app.request("/v1/models/ghost/predict", { method: "POST", body, headers: auth }),
      404,
      "model_not_found",
    );
    const tooBig = await app.request("/v1/models/tiny/predict", {
      method: "POST",
      body,
      headers: { ...auth, "content-length": String(body.length) },
    });
    assert.match(await assertError(tooBig, 413, "payload_too_large"), /4 KiB/);
    // Streamed without a length: cut off as it arrives.
    const streamed = await app.request("/v1/models/tiny/predict", {
      method: "POST",
      body: new Blob([body]).stream(),
      headers: auth,
      duplex: "half",
    } as RequestInit);
    await assertError(streamed, 413, "payload_too_large");
    // A small gzip body whose header describes more than 4 × the limit is refused from the
    // header, before the voxels are inflated.
    const claim = encodeNifti({ ...ctVolume([64, 64, 64]), data: new Int16Array(64 ** 3) });
    const bomb = await gzip(claim);
    assert.ok(bomb.length < 4096);
    const res = await app.request("/v1/models/tiny/predict", {
      method: "POST",
      body: bomb as Uint8Array<ArrayBuffer>,
      headers: { ...auth, "content-type": "application/gzip" },
    });
    assert.match(
      await assertError(res, 413, "payload_too_large"),
      /header describes a 64×64×64 volume of 0\.5 MiB, over the 16 KiB a gzipped body may expand to/,
    );
    // Zeros with no header at all: 400 from the first bytes.
    const zeros = await gzip(new Uint8Array(1 << 20));
    const junk = await app.request("/v1/models/tiny/predict", {
      method: "POST",
      body: zeros as Uint8Array<ArrayBuffer>,
      headers: { ...auth, "content-type": "application/gzip" },
    });
    assert.match(await assertError(junk, 400, "invalid_nifti"), /header size 0/);
  },
);

Deno.test(
  "POST predict: a full GPU queue answers 503 with Retry-After; none is lost",
  testOpts,
  async () => {
    const server = await newServer({ maxQueue: 2 });
    const body = await niftiBytes(ctVolume([8, 16, 16]));
    const lease = await server.context.scheduler.acquire("test holds the GPU");
    const send = () =>
      server.app.request("/v1/models/tiny/predict", {
        method: "POST",
        body,
        headers: { ...octet, accept: "application/json" },
      });
    const first = [send(), send()];
    while (server.context.scheduler.queueDepth < 2) await new Promise((r) => setTimeout(r, 5));
    const refused = await send();
    const message = await assertError(refused, 503, "queue_full");
    assert.match(message, /queue is full/);
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    lease.release();
    for (const res of await Promise.all(first)) assert.equal(res.status, 200);
    assert.ok(new QueueFullError(3, 2).message.includes("retry in 3 s"));
  },
);

Deno.test("hidePaths: a checkpoint reader's message names no folder", () => {
  const path = "/srv/voxseg/models/lung.safetensors";
  assert.equal(
    hidePaths(`cannot open ${path}: denied; see /etc/voxseg/x.conf`, path),
    "cannot open the checkpoint: denied; see <path>",
  );
});
