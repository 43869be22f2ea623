/**
 * `voxseg serve` over a real socket with the edge options: HTTPS from a certificate made here
 * by openssl, named tokens from a token file, an extra allowed Host name, the access log in a
 * file — then the flags' errors, each refused before binding with the fix and without echoing
 * a secret.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/serve.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import { testOpts } from "./server_fixture.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

const haveOpenssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

/** A self-signed certificate for localhost and 127.0.0.1 (not a CA: rustls wants a leaf). */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, "cert.pem"), key = join(dir, "key.pem");
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return { cert, key };
}

/** Collects a child's stderr lines; `wait` resolves with the first match of `pattern`. */
function lines(stream: ReadableStream<Uint8Array>) {
  const seen: string[] = [];
  const done = (async () => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(utf8())) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      seen.push(...parts);
    }
  })();
  const wait = async (pattern: RegExp, timeoutMs = 120_000) => {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      for (const l of seen) {
        const m = l.match(pattern);
        if (m) return m;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${pattern} in:\n${seen.join("\n")}`);
  };
  return { seen, done, wait };
}

/**
 * The status of one HTTP/1.1 request over TLS with the `Host` header as given (fetch sets its
 * own Host from the URL).
 */
async function rawStatus(
  port: number,
  caCert: string,
  host: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [caCert] });
  try {
    const head = Object.entries({ host, ...headers, connection: "close" })
      .map(([k, v]) => `${k}: ${v}\r\n`).join("");
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\n${head}\r\n`));
    const reply = await new Response(conn.readable).text();
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the server already
    }
  }
}

/** A UTF-8 decoder stream (the cast: with @types/node in the graph its writable side is typed
 * as taking any BufferSource). */
function utf8(): TransformStream<Uint8Array, string> {
  return new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
}

/** The environment without any token or host setting of the caller's. */
const cleanEnv = { VOXSEG_TOKEN: "", VOXSEG_TOKEN_FILE: "", VOXSEG_ALLOWED_HOSTS: "" };

Deno.test({
  name: "serve over HTTPS with a token file, an allowed host and an access log file",
  ignore: !haveOpenssl,
  ...testOpts,
  fn: async () => {
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_tls_" }));
    const { cert, key } = await selfSigned(dir);
    const tokenFile = join(dir, "tokens.txt");
    await Deno.writeTextFile(
      tokenFile,
      "# clients\nscanner:tok-scan-7f3a\n\nviewer:tok-view-91c2\n",
      {
        mode: 0o600,
      },
    );
    const accessFile = join(dir, "access.jsonl");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "mod.ts",
        "serve",
        "--port",
        "0",
        "--data-root",
        join(dir, "data"),
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--token-file",
        tokenFile,
        "--allowed-host",
        "voxseg.test",
        "--access-log",
        accessFile,
      ],
      cwd: REPO,
      env: cleanEnv,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = lines(child.stderr);
    const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(cert)] });
    try {
      const [, port] = await log.wait(/listening on https:\/\/127\.0\.0\.1:(\d+)\//);
      const base = `https://127.0.0.1:${port}`;
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(`${base}${path}`, { client, headers });
      const health = await get("/healthz");
      assert.equal(health.status, 200);
      await health.body?.cancel();
      const byName = await fetch(`https://localhost:${port}/healthz`, { client });
      assert.equal(byName.status, 200);
      await byName.body?.cancel();
      // Not trusted without the certificate: it really is TLS.
      await assert.rejects(fetch(`${base}/healthz`));
      const refused = await get("/v1/models");
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const ok = await get("/v1/models", { authorization: "Bearer tok-view-91c2" });
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
      // Host names: the allowed one answers, another is 421 (the probes answer any).
      const ca = await Deno.readTextFile(cert);
      const auth = { authorization: "Bearer tok-scan-7f3a" };
      assert.equal(await rawStatus(+port, ca, `voxseg.test:${port}`, "/v1/models", auth), 200);
      assert.equal(await rawStatus(+port, ca, `attacker.test:${port}`, "/v1/models", auth), 421);
      assert.equal(await rawStatus(+port, ca, "attacker.test", "/healthz"), 200);
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0, log.seen.join("\n"));
      await log.done;
      const records = (await Deno.readTextFile(accessFile)).trimEnd().split("\n")
        .map((l) => JSON.parse(l));
      const models = records.filter((r) => r.route === "/v1/models");
      assert.deepEqual(models.map((r) => [r.token, r.status]), [
        [null, 401],
        ["viewer", 200],
        ["scanner", 200],
        [null, 421],
      ]);
      assert.equal(models[1].client, "127.0.0.1");
      assert.ok(models[1].bytes > 0);
      assert.equal(records.filter((r) => r.route === "/healthz").length, 3);
      const stderr = log.seen.join("\n");
      assert.match(
        stderr,
        /2 token\(s\) required for every data route, also answering voxseg\.test/,
      );
      assert.doesNotMatch(stderr, /tok-scan|tok-view|warning/);
    } finally {
      client.close();
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test(
  "serve: --token and --auth mutating start with warnings that hide the token",
  testOpts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "voxseg_warn_" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "mod.ts",
        "serve",
        "--port",
        "0",
        "--data-root",
        dir,
        "--token",
        "tok-cli-55aa",
        "--auth",
        "mutating",
        "--access-log",
        "off",
      ],
      cwd: REPO,
      env: cleanEnv,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = lines(child.stderr);
    try {
      await log.wait(/listening on http:/);
      child.kill("SIGTERM");
      await child.status;
      await log.done;
      const stderr = log.seen.join("\n");
      assert.match(stderr, /warning: --token shows the token to every user of this machine \(ps/);
      assert.match(stderr, /warning: --auth mutating leaves every read open/);
      assert.match(stderr, /token\(s\) required for mutating routes/);
      assert.doesNotMatch(stderr, /tok-cli-55aa/);
    } finally {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test({
  name: "serve: bad token files, TLS and host flags are refused before binding",
  ignore: !haveOpenssl,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "voxseg_flags_" });
    const saved = Object.fromEntries(Object.keys(cleanEnv).map((k) => [k, Deno.env.get(k)]));
    for (const k of Object.keys(cleanEnv)) Deno.env.delete(k);
    try {
      const { cert, key } = await selfSigned(dir);
      const bad = join(dir, "bad.txt");
      await Deno.writeTextFile(bad, "scanner:tok-ok\nthe secret value\n");
      const refused = async (argv: string[], message: RegExp) => {
        await assert.rejects(main(argv), (e) => {
          assert.ok(e instanceof UsageError, String(e));
          assert.match(e.message, message);
          assert.doesNotMatch(e.message, /secret value|tok-ok|BEGIN/);
          return true;
        });
      };
      await refused(
        ["--token-file", join(dir, "none.txt")],
        /--token-file .*none\.txt: cannot read it \(NotFound\)/,
      );
      await refused(
        ["--token-file", bad],
        /--token-file .*bad\.txt, line 2: expected "name:token"/,
      );
      await refused(["--token-file", bad, "--token", "x"], /give the token one way/);
      await refused(["--tls-cert", cert], /--tls-cert and --tls-key go together/);
      await refused(["--tls-cert", key, "--tls-key", key], /--tls-cert .*key\.pem: not a PEM file/);
      await refused(
        ["--tls-cert", cert, "--tls-key", cert],
        /--tls-key .*cert\.pem: not a PEM file/,
      );
      await refused(["--allowed-host", "https://voxseg.test/"], /--allowed-host takes a host name/);
      Deno.env.set("VOXSEG_ALLOWED_HOSTS", "ok.test, bad host");
      await refused([], /VOXSEG_ALLOWED_HOSTS takes a host name/);
      Deno.env.delete("VOXSEG_ALLOWED_HOSTS");
      // A token no header can carry would lock every client out; refused at start.
      Deno.env.set("VOXSEG_TOKEN", "the secret value");
      await refused([], /VOXSEG_TOKEN holds spaces.*visible ASCII only/);
      Deno.env.delete("VOXSEG_TOKEN");
      await refused(["--token", "secret value"], /--token holds spaces/);
      // TLS does not stand in for a token on a non-loopback address.
      await refused(
        ["--host", "0.0.0.0", "--tls-cert", cert, "--tls-key", key],
        /refusing to listen on 0\.0\.0\.0 without a token/,
      );
      await refused(
        ["--access-log", join(dir, "no", "such", "dir.jsonl")],
        /--access-log .*cannot open it/,
      );
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) Deno.env.set(k, v);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
