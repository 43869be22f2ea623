import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { bearerAuth, tokensEqual } from "./bearer_auth.ts";

function app(options: Parameters<typeof bearerAuth>[0]) {
  const a = new Hono();
  a.use("*", bearerAuth(options));
  a.get("/r", (c) => c.text("read"));
  a.post("/w", (c) => c.text("written"));
  a.onError(renderError);
  return a;
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

Deno.test("bearerAuth: without a token nothing is checked", async () => {
  const res = await app({}).request("/w", { method: "POST" });
  assert.equal(res.status, 200);
});

Deno.test("bearerAuth mutating: GET open, POST needs the right token", async () => {
  const a = app({ token: "s3cret" });
  assert.equal((await a.request("/r")).status, 200);
  const missing = await a.request("/w", { method: "POST" });
  assert.equal(missing.status, 401);
  assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer/);
  assert.equal((await missing.json()).error.code, "unauthorized");
  assert.equal((await a.request("/w", { method: "POST", headers: bearer("wrong") })).status, 401);
  assert.equal((await a.request("/w", { method: "POST", headers: bearer("s3cre") })).status, 401);
  const basic = { authorization: "Basic czNjcmV0" };
  assert.equal((await a.request("/w", { method: "POST", headers: basic })).status, 401);
  const ok = await a.request("/w", { method: "POST", headers: bearer("s3cret") });
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), "written");
});

Deno.test("bearerAuth all: reads need the token too", async () => {
  const a = app({ token: "s3cret", scope: "all" });
  assert.equal((await a.request("/r")).status, 401);
  assert.equal((await a.request("/r", { headers: bearer("s3cret") })).status, 200);
});

Deno.test("tokensEqual compares whole tokens of any length", async () => {
  assert.equal(await tokensEqual("abc", "abc"), true);
  assert.equal(await tokensEqual("abc", "abd"), false);
  assert.equal(await tokensEqual("", "abc"), false);
  assert.equal(await tokensEqual("abc".repeat(100), "abc"), false);
});

Deno.test("bearerAuth all: public paths are open to GET only", async () => {
  const a = app({ token: "s3cret", scope: "all", public: ["/r", "/w"] });
  assert.equal((await a.request("/r")).status, 200);
  assert.equal((await a.request("/w", { method: "POST" })).status, 401);
  assert.equal((await app({ token: "s3cret", scope: "all" }).request("/r")).status, 401);
});
