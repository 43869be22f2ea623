import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { ChunkCache } from "../../src/data/chunk_cache.ts";

const chunk = (bytes: number) => () => Promise.resolve(new Uint8Array(bytes));

Deno.test("chunk cache: least recently used goes first, bytes stay within budget", async () => {
  const cache = new ChunkCache(300);
  await cache.get("a", chunk(100));
  await cache.get("b", chunk(100));
  await cache.get("c", chunk(100));
  await cache.get("a", chunk(100)); // hit: a becomes most recent
  await cache.get("d", chunk(100)); // evicts b
  deepStrictEqual(["a", "b", "c", "d"].map((k) => cache.has(k)), [true, false, true, true]);
  await cache.get("e", chunk(250)); // evicts c, a, d (oldest first) to fit 250
  deepStrictEqual(["a", "c", "d", "e"].map((k) => cache.has(k)), [false, false, false, true]);
  deepStrictEqual(cache.stats(), { hits: 1, misses: 5, evictions: 4, bytes: 250, entries: 1 });
});

Deno.test("chunk cache: concurrent requests for one chunk share a single load", async () => {
  const cache = new ChunkCache(1000);
  let loads = 0;
  const load = async () => {
    loads++;
    await new Promise((r) => setTimeout(r, 5));
    return new Float32Array(4);
  };
  const [x, y, z] = await Promise.all([
    cache.get("k", load),
    cache.get("k", load),
    cache.get("k", load),
  ]);
  strictEqual(loads, 1);
  strictEqual(x, y);
  strictEqual(y, z);
  deepStrictEqual([cache.misses, cache.hits], [1, 2]);
});

Deno.test("chunk cache: a chunk larger than the budget is returned but not kept", async () => {
  const cache = new ChunkCache(64);
  await cache.get("small", chunk(32));
  const big = await cache.get("big", chunk(128));
  strictEqual(big.byteLength, 128);
  deepStrictEqual([cache.has("small"), cache.has("big")], [true, false]);
  const off = new ChunkCache(0);
  await off.get("x", chunk(1));
  await off.get("x", chunk(1));
  strictEqual(off.misses, 2);
});

Deno.test("chunk cache: a failed load is not cached and can be retried", async () => {
  const cache = new ChunkCache(100);
  let fail = true;
  const load = () => fail ? Promise.reject(new Error("503")) : Promise.resolve(new Uint8Array(8));
  await cache.get("k", load).then(() => {
    throw new Error("should fail");
  }, (e) => strictEqual(e.message, "503"));
  fail = false;
  strictEqual((await cache.get("k", load)).byteLength, 8);
  strictEqual(cache.misses, 2);
});
