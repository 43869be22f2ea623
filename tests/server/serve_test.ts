import assert from "node:assert/strict";
import { isLoopback, listeningLine, main, serveOptions } from "../../src/cli/serve.ts";
import { DEFAULT_MAX_QUEUE } from "../../src/server/app.ts";
import { UsageError } from "../../src/cli/usage_error.ts";

Deno.test("isLoopback: only addresses this machine alone can reach", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
    assert.equal(isLoopback(h), true, h);
  }
  for (const h of ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "127.0.0.1.nip.io"]) {
    assert.equal(isLoopback(h), false, h);
  }
});

Deno.test("voxseg serve refuses a non-loopback address without a token, and bad flags", async () => {
  const saved = Deno.env.get("VOXSEG_TOKEN");
  Deno.env.delete("VOXSEG_TOKEN");
  try {
    await assert.rejects(main(["--host", "0.0.0.0"]), (e) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /refusing to listen on 0\.0\.0\.0 without a token/);
      return true;
    });
    await assert.rejects(main(["--auth", "all"]), /--auth all needs a token/);
    await assert.rejects(main(["--auth", "mutating"]), /--auth mutating needs a token/);
    await assert.rejects(main(["--auth", "some", "--token", "t"]), /--auth must be/);
    await assert.rejects(main(["--max-body", "huge"]), /--max-body/);
    await assert.rejects(main(["--port", "99999"]), /--port/);
    await assert.rejects(main(["--queue", "0"]), /--queue/);
  } finally {
    if (saved !== undefined) Deno.env.set("VOXSEG_TOKEN", saved);
  }
});

/** Runs `fn` with none of serve's environment variables set, then puts them back. */
async function withoutServeEnv<T>(fn: () => Promise<T>): Promise<T> {
  const names = [
    "VOXSEG_TOKEN",
    "VOXSEG_TOKEN_FILE",
    "VOXSEG_ALLOWED_HOSTS",
    "VOXSEG_DICOMWEB_TOKEN",
    "VOXSEG_DICOMWEB_USER",
    "VOXSEG_DICOMWEB_PASSWORD",
    "VOXSEG_PACS_MAIN_TOKEN",
  ];
  const saved = names.map((n) => [n, Deno.env.get(n)] as const);
  for (const n of names) Deno.env.delete(n);
  try {
    return await fn();
  } finally {
    for (const [n, v] of saved) if (v !== undefined) Deno.env.set(n, v);
  }
}

Deno.test("serveOptions: the defaults, without flags or environment", async () => {
  const options = await withoutServeEnv(() => serveOptions([]));
  assert.deepEqual(options, {
    host: "127.0.0.1",
    port: 8080,
    dataRoot: "data",
    modelsDir: undefined,
    stateDir: undefined,
    tokens: new Map(),
    auth: "all",
    tokenOnCommandLine: false,
    allowedHosts: [],
    tls: undefined,
    accessLog: "stderr",
    maxBodyBytes: 1024 ** 3,
    memoryBudgetBytes: 2 * 1024 ** 3,
    maxQueue: DEFAULT_MAX_QUEUE,
    retainMs: undefined,
    pacs: [],
  });
});

Deno.test("serveOptions: flags land in their fields; a bound name is an allowed host", async () => {
  const options = await withoutServeEnv(() =>
    serveOptions([
      "--host=Scanner.Example",
      "--port=0",
      "--token=s3cret",
      "--auth=mutating",
      "--allowed-host=viewer.example",
      "--max-body=5MiB",
      "--memory-budget=64MiB",
      "--queue=3",
      "--access-log=off",
      "--data-root=scans",
      "--models=m",
      "--state=s",
    ])
  );
  assert.equal(options.host, "Scanner.Example");
  assert.equal(options.port, 0);
  assert.deepEqual([...options.tokens], [["default", "s3cret"]]);
  assert.equal(options.auth, "mutating");
  assert.equal(options.tokenOnCommandLine, true);
  assert.deepEqual(options.allowedHosts, ["viewer.example", "scanner.example"]);
  assert.equal(options.maxBodyBytes, 5 * 2 ** 20);
  assert.equal(options.memoryBudgetBytes, 64 * 2 ** 20);
  assert.equal(options.maxQueue, 3);
  assert.equal(options.accessLog, "off");
  assert.deepEqual([options.dataRoot, options.modelsDir, options.stateDir], ["scans", "m", "s"]);
  await assert.rejects(
    withoutServeEnv(() => serveOptions(["--memory-budget=1KiB"])),
    /--memory-budget must be a size .*\(at least 1MiB/,
  );
  await assert.rejects(
    withoutServeEnv(() => serveOptions(["extra"])),
    /unexpected argument "extra"/,
  );
});

Deno.test("listeningLine: scheme, bracketed IPv6, folders, limits and who may call", async () => {
  const options = await withoutServeEnv(() =>
    serveOptions(["--host=::1", "--token=t", "--allowed-host=viewer.example"])
  );
  assert.equal(
    listeningLine(options, "/srv/data", { hostname: "::1", port: 8443 }),
    "listening on http://[::1]:8443/ (data root /srv/data, models /srv/data/models, body limit " +
      "1 GiB, memory budget 2 GiB, 1 token(s) required for every data route, also answering " +
      "viewer.example)",
  );
  const open = { ...options, tokens: new Map(), allowedHosts: [], modelsDir: "m" };
  assert.equal(
    listeningLine({ ...open, tls: { cert: "", key: "" } }, "/d", { hostname: "0.0.0.0", port: 1 }),
    "listening on https://0.0.0.0:1/ (data root /d, models m, body limit 1 GiB, memory budget " +
      "2 GiB, no token)",
  );
});

Deno.test("serveOptions: --retain takes 30m, 12h, 7d; anything else is a usage error", async () => {
  const retain = async (v: string) =>
    (await withoutServeEnv(() => serveOptions([`--retain=${v}`]))).retainMs;
  assert.equal(await retain("30m"), 30 * 60e3);
  assert.equal(await retain("12h"), 12 * 3600e3);
  assert.equal(await retain("7d"), 7 * 86400e3);
  assert.equal(await retain("1d12h"), 36 * 3600e3);
  for (const bad of ["7", "7 d", "7days", "-1d", "d", "", "1w"]) {
    await assert.rejects(withoutServeEnv(() => serveOptions([`--retain=${bad}`])), (e) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, /--retain must be a duration with a unit, such as 30m, 12h, 7d/);
      return true;
    });
  }
  await assert.rejects(
    withoutServeEnv(() => serveOptions(["--retain=30s"])),
    /--retain must be at least 1m/,
  );
});

Deno.test("serveOptions: --pacs is repeatable, reads credentials from the environment, refuses bad values", async () => {
  const options = await withoutServeEnv(async () => {
    Deno.env.set("VOXSEG_PACS_MAIN_TOKEN", "env-token-123");
    return await serveOptions([
      "--pacs=main=https://pacs.example/dicom-web",
      "--pacs",
      "b=http://10.1.2.3",
    ]);
  });
  assert.deepEqual(options.pacs.map((p) => [p.name, p.url, p.auth.kind]), [
    ["main", "https://pacs.example/dicom-web", "bearer"],
    ["b", "http://10.1.2.3", "none"],
  ]);
  for (
    const [flag, message] of [
      ["BAD=https://p.example", /NAME=URL with NAME/],
      ["x=https://u:secret-pw@p.example", /holds a user or password/],
      ["x=file:///etc/passwd", /must be http or https/],
      ["x", /NAME=URL/],
    ] as const
  ) {
    await assert.rejects(withoutServeEnv(() => serveOptions([`--pacs=${flag}`])), (e) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, message);
      assert.doesNotMatch(e.message, /secret-pw/);
      return true;
    });
  }
});
