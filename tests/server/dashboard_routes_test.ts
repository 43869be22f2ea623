/**
 * The dashboard's routes without a browser: the page with its Content-Security-Policy, the
 * embedded script and stylesheet (and that they are the build of their sources), the volumes
 * of a prediction job, and JSON errors for everything else.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeNifti, writeNifti } from "../../src/data/nifti.ts";
import { buildDashboard, DIST_DIR } from "../../src/server/dashboard/build.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { stampOf } from "../../src/server/paths.ts";
import { assertError, ctVolume, dataRoot, newServer, testOpts } from "./server_fixture.ts";

Deno.test(
  "GET / is the dashboard page with a CSP that allows nothing from elsewhere",
  testOpts,
  async () => {
    const { app } = await newServer();
    const res = await app.request("/");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /connect-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("x-frame-options"), "DENY");
    const html = await res.text();
    assert.match(html, /<script type="module" src="\/dashboard\/app.js"><\/script>/);
    assert.match(html, /<link rel="stylesheet" href="\/dashboard\/app.css">/);
    // No inline script or style: the CSP would block them.
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/);
    assert.doesNotMatch(html, /<style|\sstyle=|\son\w+=/i);
    assert.doesNotMatch(html, /https?:\/\//);
  },
);

Deno.test("dashboard assets: content types, ETag revalidation, HEAD", testOpts, async () => {
  const { app } = await newServer();
  const js = await app.request("/dashboard/app.js");
  assert.equal(js.status, 200);
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  const code = await js.text();
  // Niivue and uPlot are bundled in, not fetched: their code is in the script itself.
  // (assert.ok, not match: a failing match would print all 2 MB.)
  for (const marker of ["attachToCanvas", "setColormapLabel", '"uplot"', "addSeries"]) {
    assert.ok(code.includes(marker), `app.js lacks ${marker}`);
  }
  assert.ok(!/\bfrom\s*["']https?:|\bimport\(\s*["']https?:/.test(code), "app.js imports a URL");
  const etag = js.headers.get("etag")!;
  assert.match(etag, /^"[0-9a-f]{24}"$/);
  const again = await app.request("/dashboard/app.js", { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");

  const css = await app.request("/dashboard/app.css");
  assert.equal(css.status, 200);
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  assert.match(await css.text(), /\.uplot/);

  const head = await app.request("/dashboard/app.css", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "text/css; charset=utf-8");
});

Deno.test("the committed bundle is the build of its sources (deno task dashboard)", async () => {
  const out = await Deno.makeTempDir({ prefix: "voxseg_dashboard_" });
  try {
    await buildDashboard(out);
    for (const file of ["app.js", "app.css"]) {
      const fresh = await Deno.readTextFile(join(out, file));
      const committed = await Deno.readTextFile(join(DIST_DIR, file));
      assert.ok(
        fresh === committed,
        `src/server/dashboard/dist/${file} is stale: run \`deno task dashboard\` and commit it`,
      );
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test(
  "dashboard routes are in /openapi.json; bogus paths are JSON errors",
  testOpts,
  async () => {
    const { app } = await newServer();
    const doc = await (await app.request("/openapi.json")).json();
    for (const path of ["/", "/dashboard/app.js", "/dashboard/app.css"]) {
      assert.ok(doc.paths[path]?.get, `${path} in openapi.json`);
    }
    assert.ok(doc.paths["/dashboard/jobs/{id}/image"]?.get);
    assert.ok(doc.paths["/dashboard/jobs/{id}/labels"]?.get);

    for (
      const path of [
        "/dashboard",
        "/dashboard/",
        "/dashboard/app.ts",
        "/dashboard/../deno.json",
        "/dashboard/%2e%2e/deno.json",
        "/dashboard/dist/app.js",
        "/index.html",
        "/dashboard/app.js/x",
        "/%00",
      ]
    ) {
      await assertError(await app.request(path), 404, "not_found");
    }
    await assertError(await app.request("/dashboard/jobs/nope/image"), 404, "job_not_found");
    await assertError(await app.request("/dashboard/jobs/%22%3Cb%3E/labels"), 404, "job_not_found");
    // Writing to the page's routes is refused by the router.
    const post = await app.request("/", { method: "POST", body: "x" });
    assert.equal(post.status, 404);
    assert.match(post.headers.get("content-type") ?? "", /application\/json/);
  },
);

/** A job record as the runner leaves it, written straight into the server's job store. */
function jobRecord(id: string, fields: Partial<Job>): Job {
  return {
    id,
    kind: "predict",
    name: "tiny",
    state: "succeeded",
    createdAt: new Date().toISOString(),
    request: { model: "tiny", input: "dash_in.nii.gz", output: "out/dash_seg.nii.gz" },
    attempts: 1,
    inputChecked: true,
    ...fields,
  };
}

Deno.test(
  "a prediction job's input and label map are served for the slice view",
  testOpts,
  async () => {
    // The records are written directly (no GPU run): dashboard_browser_test.ts runs a real job.
    const { root } = await dataRoot();
    const server = await newServer();
    const { app, context } = server;
    const volume = ctVolume([8, 16, 16]);
    await writeNifti(join(root, "dash_in.nii.gz"), volume);
    await Deno.mkdir(join(root, "out"), { recursive: true });
    await writeNifti(join(root, "out", "dash_seg.nii"), {
      ...volume,
      data: new Uint8Array(8 * 16 * 16).fill(2),
    });
    const written = stampOf(await Deno.stat(join(root, "out", "dash_seg.nii")));
    await context.store.create(jobRecord("jdone", {
      request: { model: "tiny", input: "dash_in.nii.gz", output: "out/dash_seg.nii" },
      result: { model: "tiny", output: "out/dash_seg.nii", summary: {} },
      wrote: { path: "out/dash_seg.nii", ...written },
    }));
    await context.store.create(jobRecord("jrunning", { state: "running" }));
    await context.store.create(
      jobRecord("jtrain", { kind: "train", request: { dataset: "synth" } }),
    );
    await context.store.create(jobRecord("jescape", {
      request: { model: "tiny", input: "../outside.nii", output: "x.nii" },
    }));

    const image = await app.request("/dashboard/jobs/jdone/image");
    assert.equal(image.status, 200);
    assert.equal(image.headers.get("content-type"), "application/gzip");
    const imageBytes = new Uint8Array(await image.arrayBuffer());
    assert.equal(Number(image.headers.get("content-length")), imageBytes.length);
    const ct = await decodeNifti(imageBytes);
    assert.deepEqual(ct.shape, volume.shape);
    assert.deepEqual(Array.from(ct.data.slice(0, 64)), Array.from(volume.data.slice(0, 64)));

    const labels = await app.request("/dashboard/jobs/jdone/labels");
    assert.equal(labels.status, 200);
    assert.equal(labels.headers.get("content-type"), "application/octet-stream");
    const seg = await decodeNifti(new Uint8Array(await labels.arrayBuffer()));
    assert.deepEqual(seg.shape, volume.shape);
    assert.ok(seg.data.every((v) => v === 2));

    // Not (yet) a label map; not a prediction; a path out of the data root; a file gone.
    await assertError(await app.request("/dashboard/jobs/jrunning/labels"), 409, "no_result");
    assert.equal((await app.request("/dashboard/jobs/jrunning/image")).status, 200);
    await assertError(await app.request("/dashboard/jobs/jtrain/image"), 409, "not_a_prediction");
    await assertError(await app.request("/dashboard/jobs/jescape/image"), 400, "invalid_path");
    await Deno.remove(join(root, "out", "dash_seg.nii"));
    await assertError(await app.request("/dashboard/jobs/jdone/labels"), 404, "file_not_found");
  },
);

Deno.test(
  "the volume routes serve only a checked NIfTI input and the very label map the job wrote",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const { app, context } = await newServer();
    await Deno.mkdir(join(root, "secret"), { recursive: true });
    const csv = "name,mrn,diagnosis\nJane Roe,0042,C34\n";
    await Deno.writeTextFile(join(root, "secret", "patients.csv"), csv);
    const volume = ctVolume([8, 16, 16]);
    await writeNifti(join(root, "secret", "ct.nii"), volume);
    await writeNifti(join(root, "secret", "seg.nii"), volume);
    const seg = stampOf(await Deno.stat(join(root, "secret", "seg.nii")));
    const noLeak = async (res: Response, status: number, code: string) => {
      const message = await assertError(res, status, code);
      assert.doesNotMatch(message, /Jane|mrn|0042/);
    };

    // A failed job whose input was never checked (a record from before the check), or a
    // record claiming a check for a file that is not NIfTI: neither is served.
    await context.store.create(jobRecord("jcsv", {
      state: "failed",
      inputChecked: undefined,
      request: { model: "tiny", input: "secret/patients.csv", output: "x.nii" },
    }));
    await noLeak(await app.request("/dashboard/jobs/jcsv/image"), 409, "input_not_checked");
    await context.store.create(jobRecord("jcsv2", {
      state: "failed",
      request: { model: "tiny", input: "secret/patients.csv", output: "x.nii" },
    }));
    await noLeak(await app.request("/dashboard/jobs/jcsv2/image"), 409, "input_not_nifti");
    // A checked input that was replaced by something else since.
    await context.store.create(jobRecord("jswap", {
      state: "failed",
      request: { model: "tiny", input: "secret/ct.nii", output: "x.nii" },
    }));
    assert.equal((await app.request("/dashboard/jobs/jswap/image")).status, 200);
    await Deno.writeTextFile(join(root, "secret", "ct.nii"), csv);
    await noLeak(await app.request("/dashboard/jobs/jswap/image"), 409, "input_not_nifti");

    // Labels: a result naming another file, or the written file replaced, are refused.
    await context.store.create(jobRecord("jother", {
      request: { model: "tiny", input: "secret/ct.nii", output: "secret/seg.nii" },
      result: { model: "tiny", output: "secret/patients.csv", summary: {} },
    }));
    await noLeak(await app.request("/dashboard/jobs/jother/labels"), 409, "no_result");
    await context.store.create(jobRecord("jseg", {
      request: { model: "tiny", input: "secret/ct.nii", output: "secret/seg.nii" },
      result: { model: "tiny", output: "secret/seg.nii", summary: {} },
      wrote: { path: "secret/seg.nii", ...seg },
    }));
    assert.equal((await app.request("/dashboard/jobs/jseg/labels")).status, 200);
    await Deno.remove(join(root, "secret", "seg.nii"));
    await Deno.writeTextFile(join(root, "secret", "seg.nii"), csv);
    await noLeak(await app.request("/dashboard/jobs/jseg/labels"), 409, "output_changed");
  },
);
