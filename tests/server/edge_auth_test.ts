/**
 * The token guards every route that reads or changes data: each route of the table is tried
 * without a token, with a wrong one and (for reads) with the right one; only the probes and the
 * dashboard's static shell answer without it.
 */

import assert from "node:assert/strict";
import type { RouteSpec } from "../../src/server/routes/table.ts";
import { assertError, newServer, testOpts } from "./server_fixture.ts";

/** The routes open without a token, and nothing else. */
const OPEN = [
  "GET /",
  "GET /dashboard/app.css",
  "GET /dashboard/app.js",
  "GET /healthz",
  "GET /readyz",
];

/** A concrete URL for a route pattern. */
const urlOf = (r: RouteSpec) => r.path.replace(":id", "jnothere-0").replace(":name", "tiny");

const requestFor = (r: RouteSpec, headers: Record<string, string> = {}): RequestInit => ({
  method: r.method,
  headers: r.body ? { ...headers, "content-type": r.body.types[0].replace(/\*$/, "x") } : headers,
  body: r.body ? "{}" : undefined,
});

Deno.test(
  "a token guards every route of the table but the probes and the dashboard shell",
  testOpts,
  async () => {
    const tokens = new Map([["scanner", "tok-scan"], ["viewer", "tok-view"]]);
    const { app, routes } = await newServer({ tokens });
    const open: string[] = [];
    for (const r of routes) {
      const res = await app.request(urlOf(r), requestFor(r));
      if (res.status === 401) {
        assert.equal((await res.json()).error.code, "unauthorized");
        const wrong = await app.request(
          urlOf(r),
          requestFor(r, { authorization: "Bearer tok-nope" }),
        );
        await assertError(wrong, 401, "unauthorized");
      } else {
        await res.body?.cancel();
        open.push(`${r.method} ${r.path}`);
      }
    }
    assert.deepEqual(open.sort(), OPEN);
    // HEAD runs as GET in Hono: it needs the token on the same routes.
    for (const r of routes.filter((r) => r.method === "GET")) {
      const res = await app.request(urlOf(r), { method: "HEAD" });
      assert.equal(res.status, OPEN.includes(`GET ${r.path}`) ? 200 : 401, `HEAD ${r.path}`);
    }
    // Spellings of a data route that a router might take for a probe or the shell.
    for (
      const path of [
        "//v1/jobs",
        "/v1/jobs/",
        "/V1/JOBS",
        "/%761/jobs",
        "/healthz/../v1/jobs",
        "/healthz/%2e%2e/v1/jobs",
        "/dashboard/app.js/../../v1/jobs",
        "/healthz;/v1/jobs",
        "/healthz%2f..%2fv1/jobs",
      ]
    ) {
      for (const method of ["GET", "OPTIONS", "get"]) {
        const res = await app.request(`http://localhost${path}`, { method });
        assert.equal(res.status, 401, `${method} ${path}`);
        await res.body?.cancel();
      }
    }
    // Reads that leaked before: job lists, scans, events, metrics, the API description.
    for (const path of ["/v1/jobs", "/metrics", "/v1/models", "/openapi.json", "/v1/device"]) {
      for (const token of tokens.values()) {
        const res = await app.request(path, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200, `${path}: ${res.status}`);
        await res.body?.cancel();
      }
    }
  },
);

Deno.test(
  "--auth mutating stays an explicit opt-in: reads open, writes need the token",
  testOpts,
  async () => {
    const { app } = await newServer({ token: "s3cret", auth: "mutating" });
    assert.equal((await app.request("/v1/jobs")).status, 200);
    await assertError(
      await app.request("/v1/jobs/jx-0/resume", { method: "POST" }),
      401,
      "unauthorized",
    );
  },
);
