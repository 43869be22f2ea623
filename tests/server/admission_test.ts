import assert from "node:assert/strict";
import { UsageError } from "../../src/cli/usage_error.ts";
import { main as serve } from "../../src/cli/serve.ts";
import { encodeNifti } from "../../src/data/nifti.ts";
import { MemoryBudget } from "../../src/server/admission.ts";
import { ApiError } from "../../src/server/errors.ts";
import { assertError, ctVolume, newServer, niftiBytes, testOpts } from "./server_fixture.ts";
import { gzipWithZeros } from "../fixtures/gzip_bomb.ts";

const ctx = { what: "the request body", retryAfterSeconds: 7 };
const MiB = 2 ** 20;

/** A request body like a socket's: bytes are produced only when pulled; `pulls` counts them. */
function countingBody(bytes: Uint8Array, piece = 1024) {
  const counter = { pulls: 0 };
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      counter.pulls++;
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  }, { highWaterMark: 0 });
  return { body, counter };
}

function predictInit(body: BodyInit, headers: Record<string, string> = {}): RequestInit {
  return {
    method: "POST",
    body,
    headers: { "content-type": "application/octet-stream", ...headers },
    duplex: "half",
  } as RequestInit;
}

/** Runs `f` while sampling RSS every 2 ms; returns the peak growth over the RSS before. */
async function rssGrowth(f: () => Promise<void>): Promise<number> {
  const before = Deno.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 2);
  try {
    await f();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, Deno.memoryUsage().rss) - before;
}

Deno.test("MemoryBudget: reserve, resize, release; 413 over the whole budget, 503 when taken", () => {
  const budget = new MemoryBudget(10 * MiB);
  const a = budget.reserve(4 * MiB, ctx);
  const b = budget.reserve(6 * MiB, ctx);
  assert.equal(budget.reservedBytes, 10 * MiB);
  assert.equal(budget.holders, 2);
  const busy = (() => {
    try {
      budget.reserve(1, ctx);
    } catch (e) {
      return e;
    }
  })();
  assert.ok(busy instanceof ApiError);
  assert.equal(busy.status, 503);
  assert.equal(busy.code, "memory_busy");
  assert.equal(busy.headers["retry-after"], "7");
  assert.match(busy.message, /needs 0\.0 MiB of memory, but 10\.0 MiB of the 10 MiB/);
  a.resize(1 * MiB, ctx); // shrinking always works
  assert.equal(budget.reservedBytes, 7 * MiB);
  assert.throws(() => a.resize(5 * MiB, ctx), (e) => e instanceof ApiError && e.status === 503);
  assert.equal(a.bytes, 1 * MiB, "a refused increase leaves the share as it was");
  a.resize(4 * MiB, ctx); // its own bytes count as free
  assert.throws(
    () => budget.reserve(11 * MiB, { ...ctx, what: "a 512×512×300 volume" }),
    (e) =>
      e instanceof ApiError && e.status === 413 &&
      /a 512×512×300 volume needs 11\.0 MiB .* whole memory budget of 10 MiB/.test(e.message),
  );
  b.release();
  b.release(); // idempotent
  a.release();
  assert.equal(budget.reservedBytes, 0);
  assert.equal(budget.holders, 0);
  assert.throws(() => new MemoryBudget(0), RangeError);
});

Deno.test("voxseg serve --memory-budget takes a size and refuses anything else", async () => {
  for (const bad of ["lots", "0", "2 GiBs", "2048"]) {
    await assert.rejects(
      serve(["--memory-budget", bad]),
      (e) =>
        e instanceof UsageError && /--memory-budget must be a size such as 2GiB/.test(e.message),
    );
  }
});

Deno.test(
  "predict: budget taken → 503 + Retry-After with the body unread; queue full likewise",
  testOpts,
  async () => {
    const server = await newServer({ memoryBudgetBytes: 4 * MiB, maxQueue: 1 });
    const { app, context } = server;
    const bytes = await niftiBytes(ctVolume([8, 16, 16]));

    const hog = context.admission.reserve(4 * MiB, ctx);
    const { body, counter } = countingBody(bytes);
    const res = await app.request(
      "/v1/models/tiny/predict",
      predictInit(body, { "content-length": String(bytes.length) }),
    );
    assert.match(await assertError(res, 503, "memory_busy"), /request body needs/);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    assert.equal(counter.pulls, 0, "refused before a byte of the body was read");
    hog.release();

    // The GPU busy and its one queue place taken: 503 queue_full, body unread too.
    const lease = await context.scheduler.acquire("holder");
    const waiter = context.scheduler.acquire("waiter");
    const second = countingBody(bytes);
    const full = await app.request("/v1/models/tiny/predict", predictInit(second.body));
    assert.match(await assertError(full, 503, "queue_full"), /queue is full/);
    assert.equal(second.counter.pulls, 0);
    lease.release();
    (await waiter).release();
    assert.equal(context.admission.reservedBytes, 0, "every refusal released its share");
  },
);

Deno.test(
  "predict: the share becomes the volume's need from its header (413 over the budget, 503 taken)",
  testOpts,
  async () => {
    const server = await newServer({ memoryBudgetBytes: 1 * MiB });
    const { app, context } = server;
    // 64³ int16 = 512 KiB of voxels + 256 KiB labels + 256 KiB encoded labels > 1 MiB.
    const big = encodeNifti({ ...ctVolume([64, 64, 64]), data: new Int16Array(64 ** 3) });
    const { body, counter } = countingBody(big, 4096);
    const res = await app.request("/v1/models/tiny/predict", predictInit(body));
    assert.match(
      await assertError(res, 413, "payload_too_large"),
      /a 64×64×64 volume needs 1\.0 MiB .* whole memory budget of 1 MiB/,
    );
    assert.ok(counter.pulls <= 2, `read ${counter.pulls} pieces of 4 KiB: only the header`);
    // A volume that fits the budget but not what others hold now: 503 after the header.
    const small = await niftiBytes(ctVolume([8, 16, 16])); // 4448 bytes; 8544 needed
    const hog = context.admission.reserve(MiB - 6000, ctx);
    const busy = await app.request(
      "/v1/models/tiny/predict",
      predictInit(small, { "content-length": String(small.length) }),
    );
    assert.match(await assertError(busy, 503, "memory_busy"), /a 16×16×8 volume needs/);
    hog.release();
    // Content-Length and header disagree on an uncompressed body: 400 before the voxels.
    const lie = await app.request(
      "/v1/models/tiny/predict",
      predictInit(small, { "content-length": String(small.length + 1) }),
    );
    assert.match(await assertError(lie, 400, "invalid_nifti"), /Content-Length.*header describes/);
    assert.equal(context.admission.reservedBytes, 0);
  },
);

Deno.test(
  "predict: gzip bombs are refused with RSS bounded (512 MiB of zeros; a 4 GiB header)",
  testOpts,
  async () => {
    const { app, context } = await newServer({ maxBodyBytes: 64 * MiB });
    const gz = { "content-type": "application/gzip" };
    // A valid tiny volume followed by 512 MiB of zeros: stopped at the first extra byte.
    const small = encodeNifti(ctVolume([8, 16, 16]));
    const bomb = await gzipWithZeros(small, 512 * MiB);
    let message = "";
    const grew = await rssGrowth(async () => {
      const res = await app.request("/v1/models/tiny/predict", predictInit(bomb, gz));
      message = await assertError(res, 400, "invalid_nifti");
    });
    assert.match(message, /inflated body continues past the 4448 bytes its header describes/);
    // A header claiming 1024³ int32 (4 GiB) in a few hundred bytes of gzip: 413 from the header.
    const claim = encodeNifti({ ...ctVolume([8, 16, 16]), data: new Int32Array(8 * 16 * 16) });
    new DataView(claim.buffer).setInt16(42, 1024, true);
    new DataView(claim.buffer).setInt16(44, 1024, true);
    new DataView(claim.buffer).setInt16(46, 1024, true);
    const claimGz = await gzipWithZeros(claim.subarray(0, 352), 0);
    const grewClaim = await rssGrowth(async () => {
      const res = await app.request("/v1/models/tiny/predict", predictInit(claimGz, gz));
      message = await assertError(res, 413, "payload_too_large");
    });
    assert.match(message, /header describes a 1024×1024×1024 volume of 4096\.0 MiB/);
    console.log(
      `gzip bomb ${(bomb.length / 1024).toFixed(0)} KiB → 512 MiB: RSS +${
        (grew / MiB).toFixed(1)
      } MiB; 4 GiB header: RSS +${(grewClaim / MiB).toFixed(1)} MiB`,
    );
    assert.ok(grew < 32 * MiB, `RSS grew ${(grew / MiB).toFixed(1)} MiB on a gzip bomb`);
    assert.ok(grewClaim < 32 * MiB, `RSS grew ${(grewClaim / MiB).toFixed(1)} MiB`);
    assert.equal(context.admission.reservedBytes, 0);
  },
);

Deno.test(
  "predict over a socket: a client that goes away mid-body releases its share",
  testOpts,
  async () => {
    const server = await newServer({ memoryBudgetBytes: 8 * MiB });
    const { context } = server;
    const http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      server.app.fetch,
    );
    try {
      const url = `http://127.0.0.1:${http.addr.port}/v1/models/tiny/predict`;
      const head = (await niftiBytes(ctVolume([8, 16, 16]))).slice(0, 400);
      const client = new AbortController();
      let sent = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!sent) {
            sent = true;
            return controller.enqueue(head); // the header, then a client that stalls
          }
          await new Promise((r) => setTimeout(r, 60_000));
        },
      });
      const pending = fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "application/octet-stream" },
        signal: client.signal,
      }).catch((e) => e);
      const waitFor = async (cond: () => boolean, what: string) => {
        const t0 = Date.now();
        while (!cond()) {
          if (Date.now() - t0 > 20_000) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      // Admitted, header read: the share is now the volume's need (2048 voxels × 4 + 352).
      await waitFor(() => context.admission.reservedBytes === 2048 * 4 + 352, "the header");
      assert.equal(context.admission.holders, 1);
      client.abort();
      await pending;
      await waitFor(() => context.admission.holders === 0, "the share to be released");
      assert.equal(context.admission.reservedBytes, 0);
    } finally {
      await http.shutdown();
    }
  },
);
