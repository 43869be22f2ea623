import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { mediaType, requireContentType, typeMatches } from "./content_type.ts";

const app = new Hono();
app.post(
  "/",
  requireContentType(["application/json", "application/x-nifti*"]),
  (c) => c.text("ok"),
);
app.onError(renderError);

const post = (type?: string) =>
  app.request("/", { method: "POST", body: "{}", headers: type ? { "content-type": type } : {} });

Deno.test("requireContentType: listed types pass, with parameters and prefixes", async () => {
  assert.equal((await post("application/json; charset=utf-8")).status, 200);
  assert.equal((await post("Application/JSON")).status, 200);
  assert.equal((await post("application/x-nifti-gz")).status, 200);
});

Deno.test("requireContentType: other or missing types are 415 naming what is accepted", async () => {
  const wrong = await post("text/plain");
  assert.equal(wrong.status, 415);
  const body = await wrong.json();
  assert.equal(body.error.code, "unsupported_media_type");
  assert.match(body.error.message, /text\/plain.*application\/json/);
  const missing = await app.request("/", { method: "POST", body: new Uint8Array(1) });
  assert.equal(missing.status, 415);
});

Deno.test("mediaType and typeMatches", () => {
  assert.equal(mediaType(" Application/Gzip ; q=1"), "application/gzip");
  assert.equal(mediaType(undefined), "");
  assert.equal(typeMatches("image/nifti", ["image/nifti*"]), true);
  assert.equal(typeMatches("image/png", ["image/nifti*"]), false);
});
