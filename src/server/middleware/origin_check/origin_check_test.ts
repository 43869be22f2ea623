import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { originCheck } from "./origin_check.ts";

function app() {
  const a = new Hono();
  a.use("*", originCheck());
  a.all("/w", (c) => c.text("done"));
  a.onError(renderError);
  return a;
}

Deno.test("originCheck: writes from the server's own origin or no browser pass", async () => {
  const a = app();
  const pass: Record<string, string>[] = [
    {},
    { origin: "http://localhost" },
    { host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" },
    { host: "voxseg.test:8443", origin: "https://voxseg.test:8443", "x-forwarded-proto": "https" },
    { "sec-fetch-site": "same-origin", origin: "http://localhost" },
    { "sec-fetch-site": "none" },
  ];
  for (const headers of pass) {
    for (const method of ["POST", "DELETE", "PUT", "PATCH"]) {
      const res = await a.request("/w", { method, headers });
      assert.equal(res.status, 200, `${method} ${JSON.stringify(headers)}: ${await res.text()}`);
    }
  }
});

Deno.test("originCheck: writes from another origin or site are 403", async () => {
  const a = app();
  const refuse: Record<string, string>[] = [
    { origin: "https://evil.example" },
    { origin: "null" },
    { origin: "not a url" },
    { origin: "http://localhost:8080" }, // another port
    { origin: "https://localhost" }, // another scheme, no proxy saying so
    { host: "127.0.0.1:8080", origin: "http://localhost:8080" },
    { "sec-fetch-site": "cross-site" },
    { "sec-fetch-site": "same-site", origin: "http://localhost" },
  ];
  for (const headers of refuse) {
    for (const method of ["POST", "DELETE", "PUT", "PATCH"]) {
      const res = await a.request("/w", { method, headers });
      assert.equal(res.status, 403, `${method} ${JSON.stringify(headers)}`);
      assert.equal((await res.json()).error.code, "cross_origin");
    }
  }
  // Any method but the three reads is a write: lower case and invented ones too.
  for (const method of ["patch", "BREW"]) {
    const res = await a.request("/w", { method, headers: { origin: "https://evil.example" } });
    assert.equal(res.status, 403, method);
  }
  // Reads are left to the token.
  const read = await a.request("/w", { headers: { origin: "https://evil.example" } });
  assert.equal(read.status, 200);
});
