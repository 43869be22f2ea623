/**
 * An unexpected failure answers 500 with a generic message and an error id; its message — which
 * may hold absolute paths or file contents — stays out of the answer and, redacted, goes to the
 * server's log under the same id.
 */

import assert from "node:assert/strict";
import { Hono } from "hono";
import { internalError, redactForLog, renderError } from "../../src/server/errors.ts";

/** Runs `fn` with console.error captured. */
async function capturingErrors<T>(fn: () => T | Promise<T>): Promise<{ value: T; logged: string }> {
  const original = console.error;
  const lines: string[] = [];
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    return { value: await fn(), logged: lines.join("\n") };
  } finally {
    console.error = original;
  }
}

const SECRET = 'the dataset /data/patients/Doe_John/dataset.json is not valid JSON: "name,mrn,dob"';

Deno.test("a 500 answer has an error id and none of the error's message", async () => {
  const app = new Hono();
  app.get("/v1/jobs/:id", () => {
    throw new Error(SECRET);
  });
  app.onError(renderError);
  const { value: res, logged } = await capturingErrors(() => app.request("/v1/jobs/j1"));
  assert.equal(res.status, 500);
  const body = await res.json();
  assert.equal(body.error.code, "internal");
  assert.doesNotMatch(JSON.stringify(body), /Doe|patients|mrn|dataset|\/data/);
  const id = /internal error ([0-9a-f]{8})/.exec(body.error.message)?.[1];
  assert.ok(id, body.error.message);
  // The log has the id, the route pattern and the kind of error, without the data.
  assert.match(logged, new RegExp(`error ${id} in GET /v1/jobs/:id: Error: `));
  assert.doesNotMatch(logged, /Doe|patients|mrn/);
  assert.match(logged, /is not valid JSON/);
});

Deno.test("internalError: the same for failures outside the app (Deno.serve's onError)", async () => {
  const { value: res, logged } = await capturingErrors(() =>
    Promise.resolve(internalError(new TypeError(SECRET), "the HTTP server"))
  );
  const text = await res.text();
  assert.doesNotMatch(text, /Doe|patients|mrn/);
  assert.match(logged, /in the HTTP server: TypeError: /);
  assert.doesNotMatch(logged, /Doe|mrn/);
});

Deno.test("redactForLog: paths and quoted text out, the rest kept", () => {
  assert.equal(
    redactForLog(`ENOENT: no such file, open '/data/p/Doe.nii' (os error 2) at C:\\scans\\x.nii`),
    `ENOENT: no such file, open "…" (os error 2) at <path>`,
  );
  assert.equal(
    redactForLog("shape 1/2 mismatch in file:///a/b.ts"),
    "shape 1/2 mismatch in <path>",
  );
  // Relative paths and bare file names name patients as well as absolute ones do.
  assert.equal(
    redactForLog(
      "cannot decode patients/Doe_John/ct.nii.gz: header of Doe_John.nii.gz, 348 bytes.",
    ),
    "cannot decode <path>: header of <file>, 348 bytes.",
  );
  assert.equal(
    redactForLog("series 1.2.840.113619.2.55.3 has no slices"),
    "series <uid> has no slices",
  );
  assert.equal(redactForLog("Error: step 3 of 10 failed"), "Error: step 3 of 10 failed");
});
