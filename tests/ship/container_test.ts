/**
 * The Dockerfile and compose.yaml, checked without a Docker engine: a Dockerfile linter
 * (dockerfile-utils, the one behind editors' Docker support), the facts the image promises
 * (pinned Deno, dependency layer before sources, non-root user, health check, NVIDIA graphics
 * capability, token and allowed host names from the environment), the build steps that can run
 * here by hand, and the image's command run here with compose's environment: it answers its
 * clients by the name they use, its health check without a token, and nobody else.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { validate } from "dockerfile-utils";
import { parse as parseYaml } from "yaml";

const root = fileURLToPath(new URL("../../", import.meta.url));
const dockerfile = Deno.readTextFileSync(join(root, "Dockerfile"));

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "", start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (!pending && (line.trim() === "" || line.trimStart().startsWith("#"))) return;
    if (!pending) start = i + 1;
    pending += (pending ? " " : "") + line.replace(/\\$/, "").trim();
    if (line.endsWith("\\")) return;
    const [keyword, ...rest] = pending.split(/\s+/);
    out.push({ keyword: keyword.toUpperCase(), args: rest.join(" "), line: start });
    pending = "";
  });
  return out;
}

/** The instructions of each build stage, by stage name. */
function stages(list: Instruction[]): Map<string, Instruction[]> {
  const map = new Map<string, Instruction[]>();
  let current: Instruction[] = [];
  for (const ins of list) {
    if (ins.keyword === "FROM") {
      current = [ins];
      map.set(ins.args.split(/\s+AS\s+/i)[1] ?? String(map.size), current);
    } else current.push(ins);
  }
  return map;
}

const all = instructions(dockerfile);
const byStage = stages(all);

Deno.test("Dockerfile: the linter reports nothing", () => {
  const problems = validate(dockerfile).map((d) =>
    `line ${d.range.start.line + 1}: ${d.message} (severity ${d.severity})`
  );
  assert.deepEqual(problems, []);
});

Deno.test("Dockerfile: the linter is live (it flags a broken file)", () => {
  const broken = "FROM debian\nCMD a\nCMD b\nHEALTHCHECK CMD\n";
  assert.ok(validate(broken).length >= 2);
});

Deno.test("Dockerfile: a pinned Deno builder that installs dependencies before the sources", () => {
  const build = byStage.get("build");
  assert.ok(build, "a stage named build");
  const ciDeno = Deno.readTextFileSync(join(root, ".ci/run")).match(/deno@(\d+\.\d+\.\d+)/)?.[1];
  assert.equal(build[0].args.split(/\s+/)[0], `denoland/deno:debian-${ciDeno}`);
  const at = (pred: (i: Instruction) => boolean) => build.findIndex(pred);
  const lock = at((i) => i.keyword === "COPY" && /deno\.lock/.test(i.args));
  const install = at((i) => i.keyword === "RUN" && /deno install --frozen/.test(i.args));
  const sources = at((i) => i.keyword === "COPY" && /^src\b/.test(i.args));
  const compile = at((i) => i.keyword === "RUN" && /deno task compile/.test(i.args));
  assert.ok(lock >= 0 && lock < install && install < sources && sources < compile);
});

Deno.test("Dockerfile: every COPY source exists and is not excluded by .dockerignore", async () => {
  const ignored = Deno.readTextFileSync(join(root, ".dockerignore")).split("\n")
    .map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  for (const ins of byStage.get("build")!.filter((i) => i.keyword === "COPY")) {
    const parts = ins.args.split(/\s+/);
    for (const src of parts.slice(0, -1)) {
      await Deno.stat(join(root, src)); // throws if missing
      assert.ok(!ignored.includes(src.replace(/\/$/, "")), `${src} is in .dockerignore`);
    }
  }
});

Deno.test("Dockerfile: a slim runtime, non-root, Vulkan for NVIDIA and Mesa, health check", () => {
  const run = byStage.get("runtime");
  assert.ok(run, "a stage named runtime");
  assert.match(run[0].args, /^debian:bookworm-slim\b/);
  const text = run.map((i) => `${i.keyword} ${i.args}`).join("\n");
  assert.match(text, /apt-get install[^\n]*\blibvulkan1\b[^\n]*\bmesa-vulkan-drivers\b/);
  assert.match(text, /rm -rf \/var\/lib\/apt\/lists/);
  assert.match(text, /NVIDIA_DRIVER_CAPABILITIES=[\w,]*\bgraphics\b/);
  assert.match(text, /COPY --from=build \/out\/voxseg /);
  const user = run.filter((i) => i.keyword === "USER").at(-1)?.args;
  assert.ok(user && user !== "root" && user !== "0", `runs as ${user}`);
  assert.match(text, /HEALTHCHECK[^\n]*CMD[^\n]*\/healthz/);
  assert.match(text, /VOLUME \["\/data"\]/);
});

Deno.test("Dockerfile: the command is a valid `voxseg serve` that needs the token", async () => {
  const cmd = JSON.parse(all.filter((i) => i.keyword === "CMD").at(-1)!.args) as string[];
  assert.equal(cmd[0], "serve");
  assert.deepEqual(cmd.slice(cmd.indexOf("--host"), cmd.indexOf("--host") + 2), [
    "--host",
    "0.0.0.0",
  ]);
  // The same arguments, run here without a token, must be refused before binding.
  const args = cmd.map((a) => (a === "8080" ? "0" : a.startsWith("/data") ? "/nonexistent" : a));
  const env = { ...Deno.env.toObject() };
  delete env.VOXSEG_TOKEN;
  delete env.VOXSEG_TOKEN_FILE;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "mod.ts"), ...args],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 2, stderr);
  assert.match(stderr, /refusing to listen on 0\.0\.0\.0 without a token/);
});

/** A UTF-8 decoder stream (the cast: with @types/node in the graph its writable side is typed
 * as taking any BufferSource). */
function utf8(): TransformStream<Uint8Array, string> {
  return new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
}

/** compose.yaml, parsed. */
function readCompose() {
  return parseYaml(Deno.readTextFileSync(join(root, "compose.yaml"))) as {
    services: Record<string, Record<string, unknown>>;
    volumes: Record<string, unknown>;
  };
}

/** The status of one HTTP/1.1 GET over TCP with `Host` as given (fetch sets its own). */
async function statusWithHost(
  port: number,
  host: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = Object.entries({ host, ...headers, connection: "close" })
    .map(([k, v]) => `${k}: ${v}\r\n`).join("");
  await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\n${head}\r\n`));
  const reply = await new Response(conn.readable).text();
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);
}

Deno.test("compose.yaml: one NVIDIA GPU reserved, token from the environment, data volume", () => {
  const compose = readCompose();
  const svc = compose.services.voxseg as {
    build: string;
    ports: string[];
    environment: Record<string, string>;
    volumes: string[];
    deploy: { resources: { reservations: { devices: Record<string, unknown>[] } } };
  };
  assert.equal(svc.build, ".");
  assert.ok(svc.ports.includes("8080:8080"));
  assert.match(svc.environment.VOXSEG_TOKEN, /^\$\{VOXSEG_TOKEN:\?/);
  assert.match(svc.environment.VOXSEG_ALLOWED_HOSTS, /^\$\{VOXSEG_ALLOWED_HOSTS\b/);
  assert.match(svc.environment.NVIDIA_DRIVER_CAPABILITIES, /\bgraphics\b/);
  const [volume, mount] = svc.volumes[0].split(":");
  assert.equal(mount, "/data");
  assert.ok(volume in compose.volumes);
  const [gpu] = svc.deploy.resources.reservations.devices;
  assert.equal(gpu.driver, "nvidia");
  assert.equal(gpu.count, 1);
  assert.ok((gpu.capabilities as string[]).includes("gpu"));
});

Deno.test("Dockerfile: the health check asks /healthz on loopback, without a token", () => {
  const check = all.find((i) => i.keyword === "HEALTHCHECK")!.args;
  const url = /CMD curl [^\n]*?(http:\/\/[^\s]+)/.exec(check)?.[1];
  assert.ok(url, check);
  assert.match(url, /^http:\/\/(127\.0\.0\.1|localhost):8080\/healthz$/);
  assert.doesNotMatch(check, /authorization|VOXSEG_TOKEN/i);
});

Deno.test("the image's command with compose's environment answers its clients", async () => {
  const cmd = JSON.parse(all.filter((i) => i.keyword === "CMD").at(-1)!.args) as string[];
  const data = await Deno.makeTempDir({ prefix: "voxseg_image_" });
  const svc = readCompose().services.voxseg as { environment: Record<string, string> };
  // compose's ${VAR:?…} and ${VAR:-…}, filled as an operator would.
  const given: Record<string, string> = {
    VOXSEG_TOKEN: "tok-image-1",
    VOXSEG_ALLOWED_HOSTS: "gpu-box.example.org",
  };
  const env: Record<string, string> = { ...Deno.env.toObject(), VOXSEG_TOKEN_FILE: "" };
  for (const [k, v] of Object.entries(svc.environment)) {
    env[k] = String(v).replace(/^\$\{(\w+)(?::[?-][^}]*)?\}$/, (_, name) => given[name] ?? "");
  }
  const args = cmd.map((a) =>
    a === "8080" ? "0" : a.startsWith("/data") ? a.replace("/data", data) : a
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "mod.ts"), ...args, "--access-log", "off"],
    env,
    clearEnv: true,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(utf8())) {
      stderr.push(chunk);
    }
  })();
  try {
    let port = 0;
    for (let t = 0; !port && t < 1200; t++) {
      port = Number(/listening on http:\/\/0\.0\.0\.0:(\d+)\//.exec(stderr.join(""))?.[1] ?? 0);
      if (!port) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(port, stderr.join(""));
    const auth = { authorization: "Bearer tok-image-1" };
    // HEALTHCHECK: curl to 127.0.0.1, no token; probes from a pod IP or any name too.
    assert.equal(await statusWithHost(port, `127.0.0.1:${port}`, "/healthz"), 200);
    assert.equal(await statusWithHost(port, "10.1.2.3:8080", "/healthz"), 200);
    // Clients by the name compose lists, by localhost, by IP; with the token only.
    assert.equal(await statusWithHost(port, "gpu-box.example.org:8080", "/v1/models", auth), 200);
    assert.equal(await statusWithHost(port, "localhost:8080", "/v1/models", auth), 200);
    assert.equal(await statusWithHost(port, "192.168.1.20:8080", "/v1/models", auth), 200);
    assert.equal(await statusWithHost(port, "gpu-box.example.org:8080", "/v1/models"), 401);
    // Any other name: a rebound attacker's page.
    assert.equal(await statusWithHost(port, "attacker.example:8080", "/v1/models", auth), 421);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await Deno.remove(data, { recursive: true });
  }
});
