/**
 * The malformed-input corpus (generator.ts) against a real `Deno.serve` socket at concurrency 8.
 * Proves: no 5xx but 503; every answer is a JSON error or a valid result; the process stays up
 * (/healthz after); and RSS, sampled every 5 ms through the run, stays under the RSS before the
 * run plus the memory budget plus {@link RSS_ALLOWANCE}. Prints one summary line.
 */

import assert from "node:assert/strict";
import { decodeNifti } from "../../../src/data/nifti.ts";
import { newServer, testOpts } from "../server_fixture.ts";
import { type CorpusCase, generateCorpus, validNifti } from "./generator.ts";

const MiB = 2 ** 20;
const SEED = 13;
const CONCURRENCY = 8;
const MEMORY_BUDGET = 64 * MiB;
const MAX_BODY = 16 * MiB;
/**
 * RSS the run may add beyond the budget: per concurrent request up to one 4 MiB inflated gzip
 * slice (GZIP_SLICE_BYTES) and the client's copy of its body, plus V8 heap growth and the
 * GPU buffers of the few valid volumes that run.
 */
const RSS_ALLOWANCE = 96 * MiB;

interface Outcome {
  status: number;
  /** Why the answer is wrong; undefined when it is right. */
  problem?: string;
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;

/** Checks one answer: a JSON error with a code, or for a valid volume a decodable label map. */
async function judge(c: CorpusCase, status: number, type: string, body: Uint8Array) {
  if (status === 400 && body.length === 0 && !/^\d+$/.test(c.declaredLength ?? "0")) {
    return undefined; // a Content-Length that is no number: refused by the HTTP layer itself
  }
  if (status >= 500 && status !== 503) {
    return `${status}: ${new TextDecoder().decode(body.slice(0, 300))}`;
  }
  if (status === 200 && c.route === "predict") {
    try {
      await decodeNifti(body);
      return undefined;
    } catch (e) {
      return `200 with a label map that does not decode: ${(e as Error).message}`;
    }
  }
  if (status < 300) return `unexpected success ${status} for ${c.kind}`;
  if (!type.includes("application/json")) return `${status} error with content type ${type}`;
  try {
    const error = JSON.parse(new TextDecoder().decode(body)).error;
    if (typeof error?.code !== "string" || typeof error?.message !== "string") {
      return `${status} error body without code and message`;
    }
  } catch {
    return `${status} error body is not JSON`;
  }
  return undefined;
}

function target(c: CorpusCase): string {
  return {
    predict: "/v1/models/tiny/predict",
    train: "/v1/jobs/train",
    predictJob: "/v1/jobs/predict",
    resume: "/v1/jobs/no-such-job/resume",
  }[c.route];
}

async function viaFetch(base: string, c: CorpusCase): Promise<Outcome> {
  const headers: Record<string, string> = c.contentType ? { "content-type": c.contentType } : {};
  const res = await fetch(base + target(c), {
    method: "POST",
    body: c.stallMs === undefined ? c.body : stalled(c.body, c.stallMs),
    headers,
  });
  const body = new Uint8Array(await res.arrayBuffer());
  const status = res.status;
  return { status, problem: await judge(c, status, res.headers.get("content-type") ?? "", body) };
}

/** The first KiB of `body`, then a pause of `ms`, then the rest; chunked. */
function stalled(body: Uint8Array<ArrayBuffer>, ms: number): ReadableStream<Uint8Array> {
  let step = 0;
  return new ReadableStream({
    async pull(controller) {
      if (step === 0) controller.enqueue(body.subarray(0, 1024));
      if (step === 1) {
        await new Promise((r) => setTimeout(r, ms));
        controller.enqueue(body.subarray(1024));
      }
      if (step === 2) controller.close();
      step++;
    },
  }, { highWaterMark: 0 });
}

/** An HTTP/1.1 request with a lying Content-Length; the sending side is closed after the body. */
async function viaSocket(port: number, c: CorpusCase): Promise<Outcome> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = `POST ${target(c)} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
      (c.contentType ? `content-type: ${c.contentType}\r\n` : "") +
      `content-length: ${c.declaredLength}\r\nconnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    await conn.write(c.body).catch(() => {}); // the server may answer and close first
    await conn.closeWrite().catch(() => {});
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    const timeout = setTimeout(() => conn.close(), 20_000);
    try {
      for await (const chunk of conn.readable) chunks.push(chunk);
    } catch { /* reset after the answer */ }
    clearTimeout(timeout);
    const text = new TextDecoder().decode(new Uint8Array(await new Blob(chunks).arrayBuffer()));
    if (!text) return { status: 0 }; // closed without an answer: the client broke the framing
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
    const split = text.indexOf("\r\n\r\n");
    const type = /content-type: ([^\r\n]*)/i.exec(text.slice(0, split))?.[1] ?? "";
    let body = text.slice(split + 4);
    if (/transfer-encoding: chunked/i.test(text.slice(0, split))) {
      body = body.replace(/^[0-9a-f]+\r\n/i, "").replace(/\r\n0\r\n\r\n$/, "");
    }
    const problem = status
      ? await judge(c, status, type, new TextEncoder().encode(body))
      : "no status line";
    return { status, problem };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the timeout */ }
  }
}

Deno.test(
  `malformed-input corpus (seed ${SEED}) at concurrency ${CONCURRENCY}: no 5xx but 503, RSS bounded`,
  testOpts,
  async () => {
    const tGen = performance.now();
    const corpus = await generateCorpus(SEED);
    console.log(
      `corpus: ${corpus.length} cases in ${((performance.now() - tGen) / 1000).toFixed(1)} s`,
    );
    assert.ok(corpus.length >= 300, `${corpus.length} cases`);
    const server = await newServer({ memoryBudgetBytes: MEMORY_BUDGET, maxBodyBytes: MAX_BODY });
    const http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      server.app.fetch,
    );
    const base = `http://127.0.0.1:${http.addr.port}`;
    try {
      // Warm up: load the model and compile its pipelines, so the RSS measured is the corpus's.
      const warm = await fetch(`${base}/v1/models/tiny/predict`, {
        method: "POST",
        body: validNifti(),
        headers: { "content-type": "application/octet-stream", accept: "application/json" },
      });
      assert.equal(warm.status, 200, await warm.text());

      const before = Deno.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 5);
      const outcomes: (Outcome & { c: CorpusCase })[] = [];
      const t0 = performance.now();
      let next = 0;
      const worker = async () => {
        while (next < corpus.length) {
          const c = corpus[next++];
          try {
            const outcome = c.declaredLength === undefined
              ? await viaFetch(base, c)
              : await viaSocket(http.addr.port, c);
            outcomes.push({ ...outcome, c });
          } catch (e) {
            outcomes.push({ status: -1, problem: `no answer: ${(e as Error).message}`, c });
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      clearInterval(sampler);
      peak = Math.max(peak, Deno.memoryUsage().rss);
      const seconds = (performance.now() - t0) / 1000;

      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 200, "the server is up after the corpus");
      await health.arrayBuffer();

      const statuses: Record<string, number> = {};
      for (const o of outcomes) statuses[o.status] = (statuses[o.status] ?? 0) + 1;
      const ran = outcomes.filter((o) => o.status === 200).length;
      const ranKinds = new Set(outcomes.filter((o) => o.status === 200).map((o) => o.c.kind));
      console.log(
        `corpus seed ${SEED}: ${outcomes.length} requests in ${seconds.toFixed(1)} s at ` +
          `concurrency ${CONCURRENCY}; statuses ${JSON.stringify(statuses)}; ${ran} ran on the ` +
          `GPU (${[...ranKinds].join(", ")}); RSS ${mib(before)} before, peak ${mib(peak)} (+${
            mib(peak - before)
          }; budget ` +
          `${mib(MEMORY_BUDGET)} + allowance ${mib(RSS_ALLOWANCE)})`,
      );
      const problems = outcomes.filter((o) => o.problem !== undefined)
        .map((o) => `${o.c.kind} → ${o.problem}`);
      assert.deepEqual(problems, [], "every answer is a JSON error or a valid result");
      assert.equal(outcomes.length, corpus.length);
      // Closed without an answer only where the client itself broke the HTTP framing.
      for (const o of outcomes.filter((o) => o.status === 0)) {
        assert.equal(o.c.kind.endsWith("length-lie"), true, `${o.c.kind} got no answer`);
      }
      for (const o of outcomes.filter((o) => o.c.valid)) {
        assert.ok([200, 503].includes(o.status), `valid ${o.c.kind} answered ${o.status}`);
      }
      const pressure = outcomes.filter((o) => o.c.kind === "budget-pressure");
      assert.ok(pressure.every((o) => o.status === 400 || o.status === 503));
      assert.ok(
        pressure.some((o) => o.status === 503),
        "slow uploads beyond the memory budget were refused with 503",
      );
      assert.ok(ran < outcomes.length / 5, `${ran} bodies ran on the GPU; most must not`);
      assert.equal(server.context.admission.reservedBytes, 0, "every share was released");
      assert.ok(
        peak - before <= MEMORY_BUDGET + RSS_ALLOWANCE,
        `RSS grew ${mib(peak - before)}, over the ${mib(MEMORY_BUDGET)} budget + ` +
          mib(RSS_ALLOWANCE),
      );
    } finally {
      await http.shutdown();
      await server.shutdown();
    }
  },
);
