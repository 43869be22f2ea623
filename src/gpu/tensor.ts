/**
 * GPU tensors: shape, element type and a pooled storage buffer.
 *
 * Layout is contiguous row-major; for volumes that is channels-first `N,C,D,H,W` with x
 * (W) fastest. Lifetimes are explicit: `dispose()` returns the buffer to the pool, and
 * {@link scope} disposes every tensor created inside it except those it returns.
 */

import { gpu } from "./device.ts";
import { BufferPool } from "./pool.ts";
import { recorder } from "./recorder.ts";

export type DType = "f32" | "i32" | "u32";

let pool: BufferPool | undefined;

/** The process-wide buffer pool. */
export function bufferPool(): BufferPool {
  return pool ??= new BufferPool(gpu().device);
}

const scopes: Set<Tensor>[] = [];

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  #buffer: GPUBuffer | undefined;

  /** Allocates an uninitialised tensor; prefer {@link empty}, {@link zeros}, {@link fromArray}. */
  constructor(shape: readonly number[], dtype: DType = "f32") {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape [${shape}]`);
    }
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    const limit = gpu().device.limits.maxStorageBufferBindingSize;
    if (this.size * 4 > limit) {
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
      throw new Error(
        `tensor [${shape.join(", ")}] needs ${mib(this.size * 4)} but this adapter binds at ` +
          `most ${mib(limit)} per storage buffer; lower the patch or batch size`,
      );
    }
    this.#buffer = bufferPool().acquire(this.size * 4);
    scopes.at(-1)?.add(this);
  }

  /** The storage buffer; throws after dispose. Its size may exceed `size * 4`. */
  get buffer(): GPUBuffer {
    if (!this.#buffer) throw new Error(`tensor [${this.shape}] used after dispose`);
    return this.#buffer;
  }

  get bytes(): number {
    return this.size * 4;
  }

  get disposed(): boolean {
    return this.#buffer === undefined;
  }

  /** Returns the buffer to the pool. Safe to call twice. */
  dispose(): void {
    if (!this.#buffer) return;
    bufferPool().release(this.#buffer);
    this.#buffer = undefined;
    for (const s of scopes) s.delete(this);
  }

  /** Copies the tensor to the host (flushes recorded work). */
  async read(): Promise<Float32Array> {
    return (await readTensors([this]))[0];
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join("×")}])`;
  }
}

/** An uninitialised tensor. */
export function empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return new Tensor(shape, dtype);
}

/** A zero-filled tensor (recorded, not submitted). */
export function zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
  const t = new Tensor(shape, dtype);
  if (t.size > 0) recorder().clear(t.buffer, 0, Math.ceil(t.bytes / 4) * 4);
  return t;
}

/** Uploads host data into a new tensor. */
export function fromArray(
  shape: readonly number[],
  data: ArrayLike<number> | Float32Array | Int32Array | Uint32Array,
  dtype: DType = "f32",
): Tensor {
  const t = new Tensor(shape, dtype);
  if (data.length !== t.size) {
    t.dispose();
    throw new Error(`data has ${data.length} values but shape [${shape}] needs ${t.size}`);
  }
  upload(t, data);
  return t;
}

/** Overwrites a tensor with host data. */
export function upload(
  t: Tensor,
  data: ArrayLike<number> | Float32Array | Int32Array | Uint32Array,
): void {
  if (data.length !== t.size) {
    throw new Error(`upload: ${data.length} values into tensor [${t.shape}] of ${t.size}`);
  }
  const Ctor = t.dtype === "f32" ? Float32Array : t.dtype === "i32" ? Int32Array : Uint32Array;
  const typed = data instanceof Ctor ? data : Ctor.from(data as ArrayLike<number>);
  // writeBuffer runs on the queue before anything still recorded; submit that first so a
  // pooled buffer is not overwritten while earlier recorded commands still read it.
  recorder().flush();
  if (t.size > 0) {
    gpu().device.queue.writeBuffer(
      t.buffer,
      0,
      typed.buffer as ArrayBuffer,
      typed.byteOffset,
      typed.byteLength,
    );
  }
}

/** Reads several tensors back in one submission. f32 tensors come back as Float32Array. */
export async function readTensors(tensors: readonly Tensor[]): Promise<Float32Array[]> {
  const raw = await recorder().read(tensors.map((t) => ({ buffer: t.buffer, bytes: t.bytes })));
  return raw.map((b) => new Float32Array(b));
}

/** Reads an integer tensor. */
export async function readInt(t: Tensor): Promise<Int32Array | Uint32Array> {
  const [b] = await recorder().read([{ buffer: t.buffer, bytes: t.bytes }]);
  return t.dtype === "u32" ? new Uint32Array(b) : new Int32Array(b);
}

/**
 * Runs `fn` and disposes every tensor it created, except those in its result (a tensor, or
 * tensors inside arrays or plain objects) and those passed to {@link keep}. Like `tf.tidy`.
 *
 * @example
 * const y = scope(() => relu(add(a, b))); // the sum is freed, y survives
 */
export function scope<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  scopes.push(created);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) {
    throw new Error("scope() takes a synchronous function; await inside it is not supported");
  }
  const escaping = new Set<Tensor>();
  collectTensors(result, escaping);
  const parent = scopes.at(-1);
  for (const t of created) {
    if (escaping.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Exempts tensors from disposal by the enclosing scopes. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== "object") return;
  if (value instanceof Tensor) {
    into.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, into, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, into, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into, depth + 1);
  }
}
