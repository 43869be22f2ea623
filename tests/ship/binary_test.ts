/**
 * The compiled binary. `deno compile` needs the `denort` runtime of this Deno version; where
 * Deno's release server is unreachable (as on CI here) the binary is built and tested only when
 * DENORT_BIN names one. The compile task's own refusals are tested everywhere.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const denort = Deno.env.get("DENORT_BIN");
const opts = { sanitizeResources: false, sanitizeOps: false };

async function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("compile: a DENORT_BIN that does not exist is named in the error", async () => {
  const r = await run(Deno.execPath(), ["run", "-A", "src/cli/compile.ts"], root, {
    DENORT_BIN: "/nonexistent/denort",
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /DENORT_BIN=\/nonexistent\/denort does not exist/);
});

Deno.test("compile: an unknown --target lists the targets", async () => {
  const r = await run(
    Deno.execPath(),
    ["run", "-A", "src/cli/compile.ts", "--target", "vax"],
    root,
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /x86_64-unknown-linux-gnu.*aarch64-unknown-linux-gnu/);
});

Deno.test({
  name: "binary: built with DENORT_BIN, runs every layer with no source tree beside it",
  ignore: !denort,
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "voxseg-binary-" });
    try {
      const bin = join(dir, "voxseg");
      const built = await run(
        Deno.execPath(),
        [
          "run",
          "-A",
          "src/cli/compile.ts",
          "--output",
          bin,
        ],
        root,
        { DENORT_BIN: denort! },
      );
      assert.equal(built.code, 0, built.stderr);
      const work = join(dir, "work");
      await Deno.mkdir(work);
      // Commands run in a folder with nothing of the repository in it.
      const help = await run(bin, ["help"], work);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /train/);
      const info = await run(bin, ["info", "--json"], work);
      assert.equal(info.code, 0, info.stderr);
      assert.ok(JSON.parse(info.stdout).adapter);
      const synth = await run(bin, [
        "synth",
        "--out",
        "ds",
        "--cases",
        "3",
        "--shape",
        "16,32,32",
        "--val",
        "0.34",
        "--test",
        "0",
      ], work);
      assert.equal(synth.code, 0, synth.stderr);
      // Training uses every shader family and the patch-loader worker (loaded by URL).
      const train = await run(bin, [
        "train",
        "--data",
        "ds",
        "--out",
        "run",
        "--epochs",
        "1",
        "--itersPerEpoch",
        "2",
        "--model.baseChannels",
        "4",
        "--model.depth",
        "2",
        "--patch",
        "16,32,32",
        "--batch-size",
        "1",
        "--data.workers",
        "1",
      ], work);
      assert.equal(train.code, 0, train.stderr);
      await Deno.stat(join(work, "run", "best.safetensors"));
      // The DICOM codecs (JPEG lossless in JS, JPEG-LS and JPEG 2000 in WebAssembly) load from
      // inside the binary: pydicom's real compressed files, when Debian's python3-pydicom is here.
      const pydicom = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
      for (const file of ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]) {
        const path = join(pydicom, file);
        if (!(await Deno.stat(path).then(() => true, () => false))) continue;
        const converted = await run(
          bin,
          ["convert", "--dicom", path, "--out", `${file}.zarr`],
          work,
        );
        assert.equal(converted.code, 0, `${file}: ${converted.stderr}`);
      }

      const server = new Deno.Command(bin, {
        args: ["serve", "--port", "0", "--data-root", work],
        cwd: work,
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        const reader = server.stderr.pipeThrough(
          new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>,
        ).getReader();
        let text = "", base: string | undefined;
        while (!base) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`server exited:\n${text}`);
          text += value;
          base = text.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\//)?.[1];
        }
        reader.releaseLock();
        const health = await fetch(`${base}/healthz`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
        const page = await fetch(`${base}/`);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /<html/i);
        // The dashboard bundle (Niivue and uPlot) is embedded too.
        const script = await fetch(`${base}/dashboard/app.js`);
        assert.equal(script.status, 200);
        assert.match(await script.text(), /attachToCanvas/);
      } finally {
        server.kill("SIGTERM");
        await server.status;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the binary's module graph leaves out the benchmark peers and their npm packages", async () => {
  // What `deno compile` embeds: the entry point's static and analysable dynamic imports. The
  // peers (TF.js, onnxruntime-node: hundreds of MB) are imported by a run-time specifier.
  const { code, stdout, stderr } = await run(Deno.execPath(), ["info", "--json", "mod.ts"], root);
  assert.equal(code, 0, stderr);
  const specifiers: string[] = JSON.parse(stdout).modules.map((m: { specifier: string }) =>
    m.specifier
  );
  assert.ok(specifiers.some((s) => s.endsWith("/src/cli/bench/peers.ts")), "peers suite embedded");
  assert.deepEqual(specifiers.filter((s) => s.includes("/bench/peer/")), []);
  const npm = new Set(
    specifiers.filter((s) => s.startsWith("npm:")).map((s) => s.match(/^npm:\/?(@?[^@/]+)/)![1]),
  );
  assert.deepEqual([...npm].sort(), [
    "@cornerstonejs", // JPEG-LS and JPEG 2000 decoders (WebAssembly), loaded on first use
    "@zarrita",
    "dcmjs",
    "fflate",
    "hono",
    "jpeg-lossless-decoder-js",
    "numcodecs",
    "zarrita",
  ]);
});
