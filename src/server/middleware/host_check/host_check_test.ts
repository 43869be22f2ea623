import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { allowedHostName, hostCheck, hostName, isFixedHost } from "./host_check.ts";

Deno.test("hostName and isFixedHost: loopback names and IP literals only", () => {
  const fixed = [
    "localhost",
    "LOCALHOST:8080",
    "app.localhost",
    "localhost.",
    "127.0.0.1",
    "127.9.9.9:80",
    "10.0.0.7:8080",
    "[::1]",
    "[::1]:8080",
    "[fe80::1]:443",
  ];
  for (const h of fixed) assert.ok(isFixedHost(hostName(h)), h);
  const names = [
    "attacker.example",
    "attacker.example:8080",
    "127.0.0.1.nip.io",
    "localhost.attacker.example",
    "localhostx",
    "2130706433",
    "[not-an-ip]",
    "",
    "evil.example/.localhost",
    "evil.example#.localhost",
    "a..localhost",
    "localhost:8080:80",
  ];
  for (const h of names) assert.ok(!isFixedHost(hostName(h)), h);
  // Not host names at all: the middleware answers 400 for these.
  for (const h of ["evil.example/.localhost", "x?y", "a@localhost", "a..b", "", "[::1"]) {
    assert.equal(hostName(h), undefined, h);
  }
  assert.equal(hostName("[fe80::1%25eth0]:443"), "[fe80::1%25eth0]");
});

Deno.test("hostCheck: listed names pass, others 421 naming the flag, anyHost paths open", async () => {
  const app = new Hono();
  app.use("*", hostCheck({ allowed: ["voxseg.example.org"], anyHost: ["/healthz"] }));
  app.get("*", (c) => c.text("ok"));
  app.onError(renderError);
  const status = async (path: string, host: string) => {
    const res = await app.request(path, { headers: { host } });
    return { status: res.status, body: await res.text() };
  };
  assert.equal((await status("/x", "voxseg.example.org:8080")).status, 200);
  assert.equal((await status("/x", "Voxseg.Example.Org.")).status, 200);
  assert.equal((await status("/x", "127.0.0.1:8080")).status, 200);
  assert.equal((await app.request("/x")).status, 200); // in-process: the URL's host, localhost
  const refused = await status("/x", "evil.example:8080");
  assert.equal(refused.status, 421);
  const error = JSON.parse(refused.body).error;
  assert.equal(error.code, "host_not_allowed");
  assert.match(
    error.message,
    /"evil\.example".*--allowed-host evil\.example or VOXSEG_ALLOWED_HOSTS/,
  );
  assert.equal((await status("/healthz", "evil.example")).status, 200);
  assert.equal((await status("/healthz/x", "evil.example")).status, 421);
  const bad = await status("/healthz", "evil.example/healthz?");
  assert.equal(bad.status, 400);
  assert.equal(JSON.parse(bad.body).error.code, "bad_host");
});

Deno.test("allowedHostName: bare host names only, with the fix in the message", () => {
  assert.equal(allowedHostName(" GPU-Box.Example.org. "), "gpu-box.example.org");
  assert.equal(allowedHostName("voxseg"), "voxseg");
  for (const bad of ["http://x", "x:8080", "x/y", "", "a b", "-x", "[::1]"]) {
    assert.throws(() => allowedHostName(bad), /--allowed-host takes a host name/, bad);
  }
});
