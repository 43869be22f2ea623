/**
 * End to end over a real socket: `voxseg serve` as a child process on a free loopback port,
 * a tiny model trained through the API while its event stream is read, a NIfTI volume
 * predicted with it, then SIGTERM and a clean exit.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isGzip } from "../../src/data/gzip.ts";
import { decodeNifti } from "../../src/data/nifti.ts";
import {
  ctVolume,
  dataRoot,
  niftiBytes,
  readEvents,
  testOpts,
  TINY_TRAIN,
} from "./server_fixture.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** Reads the child's stderr until `pattern` appears; returns the match, keeps collecting. */
function watchLines(stream: ReadableStream<Uint8Array>) {
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const done = (async () => {
    let buffer = "";
    // (The cast: with @types/node in the graph, TextDecoderStream's writable side is typed
    // as taking any BufferSource.)
    const decoder = new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
    for await (const chunk of stream.pipeThrough(decoder)) {
      buffer += chunk;
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 1);
        lines.push(line);
        for (const w of [...waiters]) {
          const m = line.match(w.pattern);
          if (m) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(m);
          }
        }
      }
    }
  })();
  // Lines that arrived before the wait count too (two lines can come in one chunk).
  let seen = 0;
  const wait = (pattern: RegExp, timeoutMs = 120_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      for (; seen < lines.length; seen++) {
        const m = lines[seen].match(pattern);
        if (m) {
          seen++;
          return resolve(m);
        }
      }
      const timer = setTimeout(
        () => reject(new Error(`no ${pattern} in:\n${lines.join("\n")}`)),
        timeoutMs,
      );
      waiters.push({
        pattern,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  return { lines, wait, done };
}

Deno.test(
  "e2e: serve, train over HTTP while streaming events, predict, SIGTERM",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const token = "e2e-token";
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "mod.ts", "serve", "--port", "0", "--data-root", root],
      cwd: REPO,
      env: { VOXSEG_TOKEN: token },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = watchLines(child.stderr);
    try {
      const [, base] = await log.wait(/listening on (http:\/\/127\.0\.0\.1:\d+)\//);
      const auth = { authorization: `Bearer ${token}` };
      await log.wait(/GPU: /);
      assert.equal((await fetch(`${base}/readyz`)).status, 200);

      // Mutating without the token is refused over the wire too.
      const refused = await fetch(`${base}/v1/jobs/train`, { method: "POST", body: "{}" });
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      // So are reads: job lists name input files.
      const unread = await fetch(`${base}/v1/jobs`);
      assert.equal(unread.status, 401);
      await unread.body?.cancel();

      const submitted = await fetch(`${base}/v1/jobs/train`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({
          dataset: "synth",
          name: "e2e",
          config: { ...TINY_TRAIN, itersPerEpoch: 6, epochs: 2 },
        }),
      });
      assert.equal(submitted.status, 202);
      const { id } = await submitted.json();

      // Events arrive live: the first progress event comes while the job is still running.
      let stateAtFirstProgress: string | undefined;
      let pending: Promise<void> | undefined;
      const events = await readEvents(
        await fetch(`${base}/v1/jobs/${id}/events`, { headers: auth }),
        () => false,
        (e) => {
          if (e.event === "progress" && !pending) {
            pending = fetch(`${base}/v1/jobs/${id}`, { headers: auth })
              .then((r) => r.json())
              .then((j) => {
                stateAtFirstProgress = j.state;
              });
          }
        },
      );
      await pending;
      assert.equal(stateAtFirstProgress, "running");
      const progress = events.filter((e) => e.event === "progress");
      assert.equal(progress.length, 12);
      assert.deepEqual(progress.map((e) => e.data.epoch), [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
      assert.equal(events.filter((e) => e.event === "metrics").length, 2);
      assert.equal(events.at(-1)!.data.state, "succeeded");

      // The new model predicts a volume of another shape; the label map keeps its geometry.
      const volume = ctVolume([10, 24, 20]);
      const res = await fetch(`${base}/v1/models/e2e/predict`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/gzip" },
        body: await niftiBytes(volume, true),
      });
      assert.equal(res.status, 200);
      const bytes = new Uint8Array(await res.arrayBuffer());
      assert.ok(isGzip(bytes));
      const labels = await decodeNifti(bytes);
      assert.deepEqual(labels.shape, volume.shape);
      assert.ok(labels.data instanceof Uint8Array);
      labels.spacingMm.forEach((s, i) => assert.ok(Math.abs(s - volume.spacingMm[i]) < 1e-5));
      labels.affine.forEach((v, i) => assert.ok(Math.abs(v - volume.affine[i]) < 1e-4));

      const metrics = await (await fetch(`${base}/metrics`, { headers: auth })).text();
      assert.match(
        metrics,
        /voxseg_http_requests_total\{method="POST",route="\/v1\/models\/:name\/predict",status="200"\} 1/,
      );
      // SIGTERM during training: the run checkpoints, the job is left interrupted on disk.
      const long = await (await fetch(`${base}/v1/jobs/train`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ dataset: "synth", config: { ...TINY_TRAIN, itersPerEpoch: 500 } }),
      })).json();
      await readEvents(
        await fetch(`${base}/v1/jobs/${long.id}/events`, { headers: auth }),
        (e) => e.event === "progress",
      );
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0, log.lines.join("\n"));
      const jobDir = join(root, ".voxseg", "jobs", long.id);
      const saved = JSON.parse(await Deno.readTextFile(join(jobDir, "job.json")));
      assert.equal(saved.state, "interrupted");
      assert.ok(saved.progress.step < 500);
      assert.ok((await Deno.stat(join(jobDir, "run", "last.safetensors"))).isFile);
    } finally {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      const status = await child.status;
      await log.done;
      assert.equal(status.code, 0, log.lines.join("\n"));
      assert.ok(log.lines.some((l) => /stopped$/.test(l)), log.lines.join("\n"));
    }
  },
);
