/**
 * Storage-buffer pool.
 *
 * Buffers are recycled by size class so a training step, after its first iteration, runs
 * without creating GPU buffers. Size classes have 1/8 granularity within each power of two
 * (at most 12.5% waste). Reuse is safe without fences because all work goes through one queue
 * in submission order: a buffer released while earlier recorded commands still read it is only
 * written by commands recorded later.
 */

// UNIFORM too: a kernel may read a small tensor through a uniform binding (conv3d's packed
// weights on CPU adapters, src/ops/conv3d.ts).
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** Rounds a byte count up to its pool size class (≥ 256 bytes). */
export function sizeClass(bytes: number): number {
  const n = Math.max(256, Math.ceil(bytes));
  const step = Math.max(256, 2 ** (Math.floor(Math.log2(n)) - 3));
  return Math.ceil(n / step) * step;
}

export interface PoolStats {
  /** Buffers created since the pool started. */
  created: number;
  /** Bytes held by live (acquired) buffers. */
  liveBytes: number;
  /** Bytes held idle in the pool. */
  freeBytes: number;
}

export class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  #stats: PoolStats = { created: 0, liveBytes: 0, freeBytes: 0 };

  constructor(private readonly device: GPUDevice) {}

  /** A storage buffer of at least `bytes` bytes; its contents are undefined. */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.#stats.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage: USAGE });
      this.#stats.created++;
    }
    this.#stats.liveBytes += size;
    return buffer;
  }

  /** Returns a buffer from {@link acquire} for reuse. */
  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buffer);
    this.#stats.liveBytes -= size;
    this.#stats.freeBytes += size;
  }

  /** Destroys idle buffers (e.g. after inference on a large volume). */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
    this.#stats.freeBytes = 0;
  }

  stats(): PoolStats {
    return { ...this.#stats };
  }
}
