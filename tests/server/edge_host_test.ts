/**
 * DNS rebinding and cross-origin writes: only the Host names the server is known by are
 * answered (421 otherwise; the probes answer any Host), and a mutating request from another
 * origin's page is 403 — also the body-less resume POST, which needs no CORS preflight.
 */

import assert from "node:assert/strict";
import { assertError, jsonPost, newServer, testOpts } from "./server_fixture.ts";

Deno.test("Host allow-list: 421 for unknown names, probes answer any Host", testOpts, async () => {
  const { app } = await newServer({ allowedHosts: ["voxseg.example.org"] });
  const get = (path: string, host: string) => app.request(path, { headers: { host } });
  for (
    const host of [
      "localhost:8080",
      "127.0.0.1:8080",
      "[::1]:8080",
      "192.168.4.2",
      "voxseg.example.org",
      "VOXSEG.example.org:8443",
    ]
  ) {
    const res = await get("/v1/jobs", host);
    assert.equal(res.status, 200, host);
    await res.body?.cancel();
  }
  for (
    const host of [
      "attacker.example",
      "voxseg.example.org.attacker.example",
      "127.0.0.1.nip.io:8080",
    ]
  ) {
    const message = await assertError(await get("/v1/jobs", host), 421, "host_not_allowed");
    assert.match(message, /--allowed-host/);
    await assertError(await get("/", host), 421, "host_not_allowed");
  }
  for (const path of ["/healthz", "/readyz"]) {
    assert.equal((await get(path, "10-0-0-7.pod.cluster.local")).status, 200, path);
  }
});

Deno.test(
  "DNS rebinding: a page re-pointed at the server cannot queue a job",
  testOpts,
  async () => {
    const { app } = await newServer();
    const res = await app.request(
      "/v1/jobs/predict",
      jsonPost({ model: "tiny", input: "synth/x.nii.gz", output: "out.nii.gz" }, {
        host: "attacker.example:8080",
        origin: "http://attacker.example:8080",
      }),
    );
    await assertError(res, 421, "host_not_allowed");
  },
);

Deno.test(
  "cross-origin writes are 403, resume included; same-origin and scripts pass",
  testOpts,
  async () => {
    const { app } = await newServer({ token: "t" });
    const auth = { authorization: "Bearer t" };
    const resume = (headers: Record<string, string>) =>
      app.request("/v1/jobs/jnothere-0/resume", {
        method: "POST",
        headers: { ...auth, ...headers },
      });
    // A foreign page's simple POST (no body, no preflight), even one holding the token.
    await assertError(await resume({ origin: "https://evil.example" }), 403, "cross_origin");
    await assertError(await resume({ origin: "null" }), 403, "cross_origin");
    await assertError(await resume({ origin: "http://localhost:9999" }), 403, "cross_origin");
    await assertError(await resume({ origin: "https://localhost" }), 403, "cross_origin");
    await assertError(await resume({ "sec-fetch-site": "cross-site" }), 403, "cross_origin");
    await assertError(await resume({ "sec-fetch-site": "same-site" }), 403, "cross_origin");
    await assertError(
      await app.request("/v1/jobs/jnothere-0", {
        method: "DELETE",
        headers: { ...auth, origin: "https://evil.example" },
      }),
      403,
      "cross_origin",
    );
    // The server's own page, a TLS-terminating proxy in front of it, and curl get through to
    // the route (which has no such job).
    await assertError(
      await resume({ origin: "http://localhost", "sec-fetch-site": "same-origin" }),
      404,
      "job_not_found",
    );
    await assertError(
      await resume({ host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" }),
      404,
      "job_not_found",
    );
    await assertError(
      await resume({ origin: "https://localhost", "x-forwarded-proto": "https" }),
      404,
      "job_not_found",
    );
    await assertError(await resume({}), 404, "job_not_found");
    // Reads are not writes: a foreign Origin on GET is left to the token.
    const read = await app.request("/v1/jobs", {
      headers: { ...auth, origin: "https://evil.example" },
    });
    assert.equal(read.status, 200);
    await read.body?.cancel();
  },
);

Deno.test(
  "a Host that is no host name is 400 on every path, probes included",
  testOpts,
  async () => {
    const { app } = await newServer({ token: "t" });
    // Deno builds the request URL from Host, so "evil.example/healthz?" turned `GET /v1/jobs`
    // into /healthz, and "x/.localhost" passed as a loopback name.
    for (
      const host of [
        "evil.example/healthz?",
        "evil.example/.localhost",
        "evil.example#.localhost",
        "a..localhost",
        "user@localhost",
        "localhost:8080:80",
        "[::1",
        "",
      ]
    ) {
      for (const path of ["/v1/jobs", "/healthz"]) {
        const res = await app.request(path, { headers: { host, authorization: "Bearer t" } });
        await assertError(res, 400, "bad_host");
      }
    }
  },
);
