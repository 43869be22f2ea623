/**
 * An LRU cache of decoded Zarr chunks, bounded by a byte budget. One cache can serve many
 * arrays (a case's image and label, or every case a loader opens): keys name the array and
 * the chunk. Concurrent requests for the same chunk share one load.
 */

export interface ChunkCacheStats {
  /** Requests answered from the cache (including ones joining a load in flight). */
  hits: number;
  /** Requests that had to load (fetch + decode) the chunk. */
  misses: number;
  /** Entries dropped to stay within the budget. */
  evictions: number;
  /** Bytes currently held. */
  bytes: number;
  /** Entries currently held. */
  entries: number;
}

interface Entry {
  value: ArrayBufferView;
  bytes: number;
}

export class ChunkCache {
  readonly maxBytes: number;
  hits = 0;
  misses = 0;
  evictions = 0;
  #bytes = 0;
  // A Map iterates in insertion order; re-inserting on each hit keeps the oldest first.
  #entries = new Map<string, Entry>();
  #loading = new Map<string, Promise<ArrayBufferView>>();

  /** @param maxBytes the budget for decoded chunk bytes (0 disables caching). */
  constructor(maxBytes = 256 * 2 ** 20) {
    if (!(maxBytes >= 0)) throw new RangeError(`cache budget must be ≥ 0 bytes, got ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  /**
   * The chunk under `key`, loading it with `load` on a miss. A chunk larger than the whole
   * budget is returned but not kept.
   */
  async get<T extends ArrayBufferView>(key: string, load: () => Promise<T>): Promise<T> {
    const entry = this.#entries.get(key);
    if (entry) {
      this.hits++;
      this.#entries.delete(key);
      this.#entries.set(key, entry);
      return entry.value as T;
    }
    const pending = this.#loading.get(key);
    if (pending) {
      this.hits++;
      return (await pending) as T;
    }
    this.misses++;
    const promise = load();
    this.#loading.set(key, promise);
    try {
      const value = await promise;
      this.#insert(key, value);
      return value;
    } finally {
      this.#loading.delete(key);
    }
  }

  /** True when `key` is held (does not count as a hit or touch its recency). */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Current counters. */
  stats(): ChunkCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      bytes: this.#bytes,
      entries: this.#entries.size,
    };
  }

  /** Zeroes the hit, miss and eviction counters (entries stay). */
  resetStats(): void {
    this.hits = this.misses = this.evictions = 0;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }

  #insert(key: string, value: ArrayBufferView): void {
    const bytes = value.byteLength;
    if (bytes > this.maxBytes) return;
    while (this.#bytes + bytes > this.maxBytes) {
      const [oldest, entry] = this.#entries.entries().next().value!;
      this.#entries.delete(oldest);
      this.#bytes -= entry.bytes;
      this.evictions++;
    }
    this.#entries.set(key, { value, bytes });
    this.#bytes += bytes;
  }
}
