/**
 * The Dockerfile and compose.yaml, checked without a Docker engine: a Dockerfile linter
 * (dockerfile-utils, the one behind editors' Docker support), the facts the image promises
 * (pinned Deno, dependency layer before sources, non-root user, health check, NVIDIA graphics
 * capability, token from the environment), and the build steps that can run here by hand.
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

Deno.test("compose.yaml: one NVIDIA GPU reserved, token from the environment, data volume", () => {
  const compose = parseYaml(Deno.readTextFileSync(join(root, "compose.yaml"))) as {
    services: Record<string, Record<string, unknown>>;
    volumes: Record<string, unknown>;
  };
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
  assert.match(svc.environment.NVIDIA_DRIVER_CAPABILITIES, /\bgraphics\b/);
  const [volume, mount] = svc.volumes[0].split(":");
  assert.equal(mount, "/data");
  assert.ok(volume in compose.volumes);
  const [gpu] = svc.deploy.resources.reservations.devices;
  assert.equal(gpu.driver, "nvidia");
  assert.equal(gpu.count, 1);
  assert.ok((gpu.capabilities as string[]).includes("gpu"));
});
