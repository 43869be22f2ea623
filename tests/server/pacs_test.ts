/**
 * PACS endpoints and PACS prediction jobs, without a GPU or a PACS: the `--pacs` registry and
 * its credentials, GET /v1/pacs, the request checks (each 400), the dispatch to a stand-in
 * pipeline hook, the purge of what such a job pulled, and no credential in any answer or log.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { PacsHooks, PacsPredictInput } from "../../src/server/jobs/deps.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { PacsConfigError, PacsRegistry, parsePacsFlags } from "../../src/server/pacs.ts";
import { assertError, jsonPost } from "./server_fixture.ts";
import { type Box, captureLogs, exists, newBox, until } from "./pacs_fixture.ts";

const TOKEN = "tok-9f8e7d6c5b4a";
const PASSWORD = "pw-Zq81!secret";
const env = (vars: Record<string, string>) => (name: string) => vars[name];
const ENV = env({
  VOXSEG_PACS_MAIN_TOKEN: TOKEN,
  VOXSEG_PACS_SITE_B_USER: "voxseg",
  VOXSEG_PACS_SITE_B_PASSWORD: PASSWORD,
});
const ENDPOINTS = parsePacsFlags(
  ["main=https://pacs.example.org/dicom-web/", "site-b=http://10.0.0.7:8042/dicomweb"],
  ENV,
);
const STUDY = "1.2.840.113619.2.55.3.604688119.969.1268071029.320";
const SERIES = "1.2.840.113619.2.55.3.604688119.969.1268071029.321";

/** The summary a pipeline reports. */
const SUMMARY = {
  classes: [{ name: "background", voxels: 10, volumeMl: 0.01 }],
  shape: [1, 2, 5] as [number, number, number],
  spacingMm: [1, 1, 1] as [number, number, number],
  seconds: 0.1,
};

/** A pipeline that records its input, pulls two files, writes the output and succeeds. */
function fakePipeline(seen: PacsPredictInput[]): PacsHooks {
  return {
    predict: async (input) => {
      seen.push(input);
      await Deno.writeTextFile(join(input.pulledDir, "1.dcm"), "instance 1");
      await Deno.mkdir(join(input.pulledDir, "series"));
      await Deno.writeTextFile(join(input.pulledDir, "series", "2.dcm"), "instance 2");
      input.onProgress({ phase: "pull", done: 2, total: 2 });
      await input.output?.write(new TextEncoder().encode("a SEG"));
      return {
        seriesUid: input.series ?? SERIES,
        choice: input.series ? "requested" : "the CT series with most slices",
        summary: SUMMARY,
        ...(input.store ? { stored: { sopInstanceUid: "2.25.1234" } } : {}),
      };
    },
  };
}

/** A pipeline that runs until the job is cancelled, having pulled one file. */
const blockingPipeline: PacsHooks = {
  predict: async ({ pulledDir, signal }) => {
    await Deno.writeTextFile(join(pulledDir, "1.dcm"), "instance 1");
    await new Promise((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    throw new Error("unreachable");
  },
};

const predict = (box: Box, body: unknown, headers: Record<string, string> = {}) =>
  box.server.app.request("/v1/jobs/predict", jsonPost(body, headers));

const job = (id: string, box: Box) => box.server.context.store.get(id);

Deno.test("--pacs: names, URLs and credentials from the environment; errors name the fix", () => {
  const [main, siteB] = ENDPOINTS;
  assert.deepEqual([main.name, main.url, main.auth], [
    "main",
    "https://pacs.example.org/dicom-web",
    { kind: "bearer", token: TOKEN },
  ]);
  assert.deepEqual(siteB.auth, { kind: "basic", user: "voxseg", password: PASSWORD });
  const shared = parsePacsFlags(
    ["x=https://p.example"],
    env({ VOXSEG_DICOMWEB_USER: "u", VOXSEG_DICOMWEB_PASSWORD: "p" }),
  );
  assert.deepEqual(shared[0].auth, { kind: "basic", user: "u", password: "p" });
  assert.deepEqual(parsePacsFlags(["x=https://p.example"], env({}))[0].auth, { kind: "none" });
  // Its own variables win over the shared ones.
  const own = parsePacsFlags(
    ["x=https://p.example"],
    env({ VOXSEG_PACS_X_TOKEN: "a", VOXSEG_DICOMWEB_TOKEN: "b" }),
  );
  assert.deepEqual(own[0].auth, { kind: "bearer", token: "a" });

  const refused: [string[], Record<string, string>, RegExp][] = [
    [["main"], {}, /NAME=URL/],
    [["Main=https://p.example"], {}, /NAME=URL with NAME 1–32 of a-z/],
    [["a".repeat(33) + "=https://p.example"], {}, /NAME=URL/],
    [["x=pacs.example"], {}, /not valid/],
    [["x=ftp://p.example"], {}, /must be http or https, got ftp/],
    [["x=https://admin:hunter2@p.example"], {}, /holds a user or password.*VOXSEG_PACS_X_TOKEN/],
    [["x=https://p.example/?apikey=hunter2"], {}, /no query string/],
    [["x=https://p.example", "x=https://q.example"], {}, /given twice/],
    [["a-b=https://p.example", "a_b=https://q.example"], {}, /share .*VOXSEG_PACS_A_B_/],
    [["x=https://p.example"], { VOXSEG_PACS_X_TOKEN: "t", VOXSEG_PACS_X_USER: "u" }, /set one/],
    [["x=https://p.example"], { VOXSEG_PACS_X_USER: "u" }, /go together/],
    [["x=https://p.example"], { VOXSEG_PACS_X_TOKEN: "has space hunter2" }, /Authorization/],
  ];
  for (const [specs, vars, message] of refused) {
    assert.throws(() => parsePacsFlags(specs, env(vars)), (e) => {
      assert.ok(e instanceof PacsConfigError, String(e));
      assert.match(e.message, message);
      assert.doesNotMatch(e.message, /hunter2/, "a secret in the message");
      return true;
    });
  }
});

Deno.test("an endpoint logged or serialised by mistake shows no secret", () => {
  const registry = new PacsRegistry(ENDPOINTS);
  for (const e of [...ENDPOINTS, registry.get("main")!, registry.get("site-b")!]) {
    for (const text of [JSON.stringify(e), Deno.inspect(e), JSON.stringify({ e }), String(e)]) {
      assert.ok(!text.includes(TOKEN) && !text.includes(PASSWORD), text);
    }
    assert.ok(!JSON.stringify(e.auth).includes(TOKEN) && !Deno.inspect(e.auth).includes(TOKEN));
  }
  assert.deepEqual(registry.list(), [
    { name: "main", origin: "https://pacs.example.org", auth: "bearer" },
    { name: "site-b", origin: "http://10.0.0.7:8042", auth: "basic" },
  ]);
});

Deno.test("GET /v1/pacs lists names and origins behind the token; none configured is an empty list", async () => {
  const box = await newBox({ pacsEndpoints: ENDPOINTS, token: "t0k" });
  await assertError(await box.server.app.request("/v1/pacs"), 401, "unauthorized");
  const res = await box.server.app.request("/v1/pacs", {
    headers: { authorization: "Bearer t0k" },
  });
  assert.equal(res.status, 200);
  assert.deepEqual((await res.json()).pacs.map((p: { name: string }) => p.name), [
    "main",
    "site-b",
  ]);
  await box.server.shutdown();
  const none = await newBox();
  assert.deepEqual(await (await none.server.app.request("/v1/pacs")).json(), { pacs: [] });
  await none.server.shutdown();
});

Deno.test("PACS predict requests: each problem is a 400 naming it; no address is ever taken", async () => {
  const box = await newBox({ pacsEndpoints: ENDPOINTS });
  const ok = { model: "m", pacs: "main", study: STUDY };
  const refused: [unknown, string, RegExp][] = [
    [{ ...ok, pacs: "other" }, "unknown_pacs", /no PACS named "other".*configured: main, site-b/],
    [{ ...ok, pacs: "https://evil.example/dicom-web" }, "pacs_address_refused", /serve --pacs/],
    [{ ...ok, pacs: "evil.example:8042" }, "pacs_address_refused", /configured by the server/],
    [{ ...ok, url: "https://evil.example" }, "pacs_address_refused", /"url"/],
    [{ ...ok, pacsUrl: "https://evil.example" }, "pacs_address_refused", /"pacsUrl"/],
    [{ model: "m", input: "a.nii", output: "b.nii", url: "x" }, "pacs_address_refused", /url/],
    [{ ...ok, input: "in/ct.nii" }, "invalid_request", /either "input".*not both/],
    [{ model: "m", study: STUDY }, "invalid_request", /"pacs" .* is required/],
    [{ model: "m", pacs: "main" }, "invalid_request", /"study" .* is required/],
    [{ ...ok, study: "1.2.03.4" }, "invalid_request", /"study" must be a DICOM UID/],
    [{ ...ok, study: "1.2.abc" }, "invalid_request", /DICOM UID/],
    [{ ...ok, study: "1.2." + "3".repeat(63) }, "invalid_request", /at most 64/],
    [{ ...ok, study: 1.2 }, "invalid_request", /got number/],
    [{ ...ok, series: "1..2" }, "invalid_request", /"series" must be a DICOM UID/],
    [{ ...ok, store: "yes" }, "invalid_request", /store must be true or false/],
    [{ ...ok, output: "out/seg.png" }, "invalid_request", /\.nii, \.nii\.gz or \.dcm/],
    [{ ...ok, extra: 1 }, "invalid_request", /unknown field "extra"/],
    [{ ...ok, model: "../m" }, "invalid_request", /model must be/],
  ];
  for (const [body, code, message] of refused) {
    assert.match(await assertError(await predict(box, body), 400, code), message);
  }
  const none = await newBox();
  assert.match(
    await assertError(await predict(none, ok), 400, "unknown_pacs"),
    /none is: the operator adds one with `voxseg serve --pacs NAME=URL`/,
  );
  assert.deepEqual(box.server.context.store.list(), []);
  await box.server.shutdown();
  await none.server.shutdown();
});

Deno.test("a PACS job runs the pipeline hook with its endpoint, folder and output; purge removes what it pulled and wrote", async () => {
  const seen: PacsPredictInput[] = [];
  const box = await newBox({ pacsEndpoints: ENDPOINTS, pacs: fakePipeline(seen) });
  const res = await predict(box, {
    model: "m",
    pacs: "main",
    study: STUDY,
    series: SERIES,
    store: true,
    output: "out/seg.dcm",
  });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as Job;
  await until("the job to succeed", () => job(id, box)?.state === "succeeded");
  const [input] = seen;
  assert.equal(input.pacs.name, "main");
  assert.equal(input.pacs.url, "https://pacs.example.org/dicom-web");
  assert.deepEqual(input.pacs.auth, { kind: "bearer", token: TOKEN });
  assert.deepEqual([input.study, input.series, input.store, input.model], [
    STUDY,
    SERIES,
    true,
    "m",
  ]);
  assert.equal(input.pulledDir, join(box.stateDir, id, "pulled"));
  assert.equal((await Deno.stat(input.pulledDir)).mode! & 0o777, 0o700);
  assert.equal(input.output?.name, "out/seg.dcm");
  const result = await (await box.server.app.request(`/v1/jobs/${id}/result`)).json();
  assert.deepEqual(result, {
    id,
    kind: "predict",
    state: "succeeded",
    model: "m",
    pacs: "main",
    study: STUDY,
    seriesUid: SERIES,
    choice: "requested",
    summary: SUMMARY,
    stored: { sopInstanceUid: "2.25.1234" },
    output: "out/seg.dcm",
  });
  assert.equal(await Deno.readTextFile(join(box.root, "out/seg.dcm")), "a SEG");
  // The output is taken now: a second job may not name it.
  await assertError(
    await predict(box, { model: "m", pacs: "main", study: STUDY, output: "out/seg.dcm" }),
    409,
    "output_exists",
  );

  const purged = await box.server.app.request(`/v1/jobs/${id}?purge=true`, { method: "DELETE" });
  assert.deepEqual((await purged.json()).removed, {
    outputs: 1,
    pulledFiles: 2,
    runFiles: 0,
    record: true,
  });
  assert.equal(await exists(join(box.stateDir, id)), false);
  assert.equal(await exists(join(box.root, "out/seg.dcm")), false);
  await box.server.shutdown();
});

Deno.test("without a pipeline hook a PACS job fails pacs_unavailable; a PACS dropped from --pacs fails unknown_pacs", async () => {
  const box = await newBox({ pacsEndpoints: ENDPOINTS });
  const res = await predict(box, { model: "m", pacs: "site-b", study: STUDY });
  const { id } = (await res.json()) as Job;
  await until("the job to fail", () => job(id, box)?.state === "failed");
  assert.equal(job(id, box)!.error!.code, "pacs_unavailable");
  assert.match(job(id, box)!.error!.message, /DICOM pipeline is not wired/);
  await box.server.shutdown();

  // The same job resumed by a server that no longer has that PACS.
  const { openBox } = await import("./pacs_fixture.ts");
  const again = await openBox(box.root, box.stateDir, { pacs: fakePipeline([]) });
  await again.server.app.request(`/v1/jobs/${id}/resume`, { method: "POST" });
  await until("the resumed job to fail", () => job(id, again)?.state === "failed");
  assert.equal(job(id, again)!.error!.code, "unknown_pacs");
  await again.server.shutdown();
});

Deno.test("purge of a running PACS job: 202, it stops, then its pulled study and record go; a queued one is cancelled and purged at once", async () => {
  const box = await newBox({ pacsEndpoints: ENDPOINTS, pacs: blockingPipeline });
  const a = (await (await predict(box, { model: "m", pacs: "main", study: STUDY })).json()) as Job;
  const b = (await (await predict(box, { model: "m", pacs: "main", study: STUDY })).json()) as Job;
  await until("a to pull", () => job(a.id, box)?.state === "running");
  await until("a's file", () => {
    try {
      return Deno.statSync(join(box.stateDir, a.id, "pulled", "1.dcm")).isFile;
    } catch {
      return false;
    }
  });
  const { value: answers, lines } = await captureLogs(async () => {
    const first = await box.server.app.request(`/v1/jobs/${a.id}?purge=true`, {
      method: "DELETE",
    });
    const queued = await box.server.app.request(`/v1/jobs/${b.id}?purge=true`, {
      method: "DELETE",
    });
    await until("a to be purged", () => job(a.id, box) === undefined);
    return [first, queued];
  });
  assert.equal(answers[0].status, 202);
  assert.match((await answers[0].json()).purge, /pending/);
  assert.equal(answers[1].status, 200);
  const report = await answers[1].json();
  assert.equal(report.cancelled, true);
  assert.equal(report.removed.record, true);
  assert.equal(await exists(join(box.stateDir, a.id)), false);
  assert.equal(await exists(join(box.stateDir, b.id)), false);
  assert.deepEqual((await (await box.server.app.request("/v1/jobs")).json()).jobs, []);
  assert.deepEqual(
    lines.sort(),
    [
      `voxseg serve: purged job ${a.id} (requested)`,
      `voxseg serve: purged job ${b.id} (requested)`,
    ].sort(),
  );
  // The runner goes on: the next job runs.
  const c = (await (await predict(box, { model: "m", pacs: "main", study: STUDY })).json()) as Job;
  await until("c to run", () => job(c.id, box)?.state === "running");
  await box.server.shutdown();
  assert.equal(job(c.id, box)!.state, "interrupted");
});

Deno.test("credentials appear in no answer and no log line, even when the pipeline's error quotes them", async () => {
  const leaky: PacsHooks = {
    predict: ({ pacs }) => {
      const auth = pacs.auth.kind === "bearer"
        ? `Bearer ${pacs.auth.token}`
        : pacs.auth.kind === "basic"
        ? `Basic ${btoa(`${pacs.auth.user}:${pacs.auth.password}`)} (${pacs.auth.password})`
        : "";
      return Promise.reject(new Error(`GET ${pacs.url}/studies failed: 401 with ${auth}`));
    },
  };
  const { value: bodies, lines } = await captureLogs(async () => {
    const box = await newBox({ pacsEndpoints: ENDPOINTS, pacs: leaky });
    const app = box.server.app;
    const texts: string[] = [];
    const keep = async (res: Response | Promise<Response>) => texts.push(await (await res).text());
    await keep(app.request("/v1/pacs"));
    await keep(app.request("/openapi.json"));
    await keep(predict(box, { model: "m", pacs: "nope", study: STUDY }));
    for (const pacs of ["main", "site-b"]) {
      const { id } = await (await predict(box, { model: "m", pacs, study: STUDY })).json();
      await until("the job to fail", () => job(id, box)?.state === "failed");
      assert.match(job(id, box)!.error!.message, /<secret>/);
      await keep(app.request(`/v1/jobs/${id}`));
      await keep(app.request(`/v1/jobs/${id}/events`));
      await keep(app.request(`/v1/jobs/${id}/result`));
    }
    await keep(app.request("/v1/jobs"));
    await keep(app.request("/metrics"));
    await box.server.shutdown();
    return texts;
  });
  const basic = btoa(`voxseg:${PASSWORD}`);
  for (const text of [...bodies, ...lines]) {
    for (const secret of [TOKEN, PASSWORD, basic]) {
      assert.ok(!text.includes(secret), `a credential in: ${text.slice(0, 300)}`);
    }
  }
  assert.ok(lines.some((l) => /job .* failed: GET /.test(l)), lines.join("\n"));
});
