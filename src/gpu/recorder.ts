/**
 * Command recording with batched submission.
 *
 * Ops append dispatches to one open compute pass, and copies (buffer to buffer, buffer to
 * texture, clears) to the command encoder between passes, so commands run in the order they
 * were recorded; nothing reaches the GPU until a flush (explicit, before an upload, or at
 * readback). A whole training step therefore becomes one or a few command buffers. Uniform
 * values for every dispatch of a batch live in one arena buffer, each dispatch in its own
 * aligned slot; the arena is written once, just before submission.
 *
 * With the adapter's `timestamp-query`, {@link Recorder.startProfile} gives every dispatch its
 * own compute pass with begin/end timestamps, and {@link Recorder.stopProfile} sums the GPU
 * time per pipeline: where a training step spends its time, without host round-trips.
 */

import { gpu, throwIfDeviceError } from "./device.ts";
import { elementBytes, type Kernel } from "./kernel.ts";

const ARENA_BYTES = 1 << 20;

/** Timestamps per query set: WebGPU's limit is 4096, two per profiled dispatch. */
const PROFILE_QUERIES = 4096;

/** GPU time spent in one pipeline while profiling. */
export interface KernelTime {
  /** Kernel name and its override constants, e.g. `conv3d[CG=2,F16=0,K=3,…]`. */
  kernel: string;
  dispatches: number;
  /** Sum of the dispatches' GPU times, milliseconds. */
  ms: number;
}

/** Profiling state: the open query set, its labels, and the batches submitted. */
interface Profile {
  querySet: GPUQuerySet;
  labels: string[];
  submitted: { querySet: GPUQuerySet; staging: GPUBuffer; labels: string[] }[];
}

export class Recorder {
  #device: GPUDevice;
  #encoder: GPUCommandEncoder | undefined;
  #pass: GPUComputePassEncoder | undefined;
  #arena = new ArrayBuffer(ARENA_BYTES);
  #view = new DataView(this.#arena);
  #arenaBuffer: GPUBuffer;
  #offset = 0;
  #align: number;
  #maxBinding: number;
  #staging = new Map<number, GPUBuffer[]>();
  /** Dispatches recorded since creation; useful in benchmarks and tests. */
  dispatchCount = 0;
  submitCount = 0;
  #profile: Profile | undefined;
  /** Resources to destroy after the next submission (see destroyAfterSubmit). */
  #retired: { destroy(): void }[] = [];

  constructor(device: GPUDevice) {
    this.#device = device;
    this.#align = Math.max(16, device.limits.minUniformBufferOffsetAlignment);
    this.#maxBinding = Math.floor(device.limits.maxStorageBufferBindingSize / 16) * 16;
    this.#arenaBuffer = device.createBuffer({
      label: "uniform arena",
      size: ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  /** True when commands are recorded but not yet submitted. */
  get pending(): boolean {
    return this.#encoder !== undefined;
  }

  /**
   * Records one dispatch of `kernel` over `groups` workgroups: `buffers` in the order of the
   * kernel's bindings, a GPUTextureView for each texture binding.
   */
  dispatch<U extends string>(
    kernel: Kernel<U>,
    uniforms: Record<U, number>,
    buffers: (GPUBuffer | GPUTextureView)[],
    groups: readonly [number, number, number],
    constants?: Record<string, number>,
  ): void {
    if (buffers.length !== kernel.spec.bindings.length) {
      throw new Error(
        `kernel ${kernel.spec.name}: expected ${kernel.spec.bindings.length} buffers, ` +
          `got ${buffers.length}`,
      );
    }
    const max = this.#device.limits.maxComputeWorkgroupsPerDimension;
    if (groups.some((g) => g > max || g < 0 || !Number.isInteger(g))) {
      throw new Error(`kernel ${kernel.spec.name}: invalid workgroup grid ${groups.join("×")}`);
    }
    if (groups[0] * groups[1] * groups[2] === 0) return;
    const queriesFull = 2 * (this.#profile?.labels.length ?? 0) === PROFILE_QUERIES;
    if (this.#offset + kernel.uniformBytes > ARENA_BYTES || queriesFull) this.flush();
    const offset = this.#offset;
    kernel.packUniforms(this.#view, offset, uniforms);
    this.#offset = Math.ceil((offset + kernel.uniformBytes) / this.#align) * this.#align;

    const pipeline = kernel.pipeline(constants);
    const bindGroup = this.#device.createBindGroup({
      layout: kernel.bindGroupLayout(),
      entries: [
        { binding: 0, resource: { buffer: this.#arenaBuffer, offset, size: kernel.uniformBytes } },
        // Pooled buffers may be a size class above the binding limit while the tensor in them
        // fits (tensors are checked against the limit when created); bind at most the limit.
        ...buffers.map((resource, i): GPUBindGroupEntry => {
          const b = kernel.spec.bindings[i];
          if (!!b.texture !== resource instanceof GPUTextureView) {
            throw new Error(
              `kernel ${kernel.spec.name}: binding ${b.name} takes a ` +
                (b.texture ? "texture view" : "buffer"),
            );
          }
          if (resource instanceof GPUTextureView) return { binding: i + 1, resource };
          // A uniform binding covers exactly its declared array (the buffer may be larger).
          const size = b.uniformLength
            ? b.uniformLength * elementBytes(b.type)
            : Math.min(resource.size, this.#maxBinding);
          return { binding: i + 1, resource: { buffer: resource, size } };
        }),
      ],
    });
    const pass = this.#profile ? this.#profiledPass(kernel, constants) : this.#computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    this.dispatchCount++;
  }

  /** Records zero-filling of a buffer range (bytes, multiples of 4). */
  clear(buffer: GPUBuffer, offset = 0, size?: number): void {
    this.#copyEncoder().clearBuffer(buffer, offset, size);
  }

  /** Records a buffer-to-buffer copy (bytes, multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.#copyEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /**
   * Records a copy of `texels` 16-byte texels from the start of `src` into `texture` (rgba32float
   * or another 16-byte format), in order with the dispatches around it: texel t goes to
   * (t % width, t / width). Whole rows in one copy, the rest of the last row in another, so
   * `src` needs no padding past its texels. The texture's width × 16 bytes must be a multiple
   * of 256.
   */
  copyToTexture(src: GPUBuffer, texture: GPUTexture, texels: number): void {
    const width = texture.width;
    const rows = Math.floor(texels / width);
    const rest = texels - rows * width;
    if (rows + (rest > 0 ? 1 : 0) > texture.height || src.size < texels * 16) {
      throw new Error(
        `copyToTexture: ${texels} texels do not fit a ${width}×${texture.height} texture ` +
          `or come from a buffer of ${src.size} bytes`,
      );
    }
    const encoder = this.#copyEncoder();
    if (rows > 0) {
      encoder.copyBufferToTexture(
        { buffer: src, offset: 0, bytesPerRow: width * 16, rowsPerImage: rows },
        { texture, origin: [0, 0, 0] },
        [width, rows, 1],
      );
    }
    if (rest > 0) {
      encoder.copyBufferToTexture(
        { buffer: src, offset: rows * width * 16 },
        { texture, origin: [0, rows, 0] },
        [rest, 1, 1],
      );
    }
  }

  /**
   * Destroys `resource` once the commands recorded so far are submitted (at once if none are
   * pending): for a texture or buffer that recorded commands still use.
   */
  destroyAfterSubmit(resource: { destroy(): void }): void {
    if (this.#encoder) this.#retired.push(resource);
    else resource.destroy();
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.#encoder) return;
    this.#pass?.end();
    this.#pass = undefined;
    const resolved = this.#profile?.labels.length ? this.#resolveProfile(this.#profile) : null;
    if (this.#offset > 0) {
      this.#device.queue.writeBuffer(this.#arenaBuffer, 0, this.#arena, 0, this.#offset);
    }
    this.#device.queue.submit([this.#encoder.finish()]);
    resolved?.destroy();
    for (const r of this.#retired.splice(0)) r.destroy();
    this.#encoder = undefined;
    this.#offset = 0;
    this.submitCount++;
  }

  /**
   * Copies byte ranges to the host in one submission and one round of `mapAsync`.
   * Each mapAsync costs milliseconds, so callers read everything they need at once.
   */
  async read(ranges: { buffer: GPUBuffer; bytes: number }[]): Promise<ArrayBuffer[]> {
    const staging = ranges.map(({ buffer, bytes }) => {
      const size = Math.ceil(bytes / 4) * 4;
      const s = this.#takeStaging(size);
      if (size > 0) this.copy(buffer, 0, s, 0, size);
      return { s, size, bytes };
    });
    this.flush();
    await Promise.all(staging.map(({ s }) => s.mapAsync(GPUMapMode.READ)));
    const out = staging.map(({ s, bytes }) => s.getMappedRange(0, s.size).slice(0, bytes));
    for (const { s } of staging) {
      s.unmap();
      this.#giveStaging(s);
    }
    throwIfDeviceError();
    return out;
  }

  /** Waits until the GPU has finished all submitted work; raises device errors. */
  async sync(): Promise<void> {
    this.flush();
    await this.#device.queue.onSubmittedWorkDone();
    throwIfDeviceError();
  }

  /**
   * Starts timing every dispatch (one compute pass each, so batches run slower than
   * unprofiled ones; compare kernels within a profile, not against unprofiled timings).
   */
  startProfile(): void {
    if (!this.#device.features.has("timestamp-query")) {
      throw new Error(
        "profiling needs the adapter feature timestamp-query, which this adapter lacks",
      );
    }
    if (this.#profile) throw new Error("startProfile: a profile is already running");
    this.flush();
    this.#profile = { querySet: this.#newQuerySet(), labels: [], submitted: [] };
  }

  /** Stops profiling and returns GPU time per pipeline, largest first. */
  async stopProfile(): Promise<KernelTime[]> {
    const profile = this.#profile;
    if (!profile) throw new Error("stopProfile: no profile was started");
    this.flush();
    this.#profile = undefined;
    profile.querySet.destroy();
    const totals = new Map<string, KernelTime>();
    for (const { querySet, staging, labels } of profile.submitted) {
      await staging.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(staging.getMappedRange());
      labels.forEach((kernel, i) => {
        const entry = totals.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
        // Timestamps may be 0 or out of order on some drivers; such a pass counts as 0.
        const ns = t[2 * i + 1] > t[2 * i] ? Number(t[2 * i + 1] - t[2 * i]) : 0;
        entry.dispatches++;
        entry.ms += ns / 1e6;
        totals.set(kernel, entry);
      });
      staging.destroy();
      querySet.destroy();
    }
    throwIfDeviceError();
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }

  #newQuerySet(): GPUQuerySet {
    return this.#device.createQuerySet({ type: "timestamp", count: PROFILE_QUERIES });
  }

  #profiledPass(kernel: Kernel, constants?: Record<string, number>): GPUComputePassEncoder {
    const profile = this.#profile!;
    this.#pass?.end();
    this.#encoder ??= this.#device.createCommandEncoder();
    const at = 2 * profile.labels.length;
    profile.labels.push(kernel.label(constants));
    this.#pass = this.#encoder.beginComputePass({
      timestampWrites: {
        querySet: profile.querySet,
        beginningOfPassWriteIndex: at,
        endOfPassWriteIndex: at + 1,
      },
    });
    return this.#pass;
  }

  /**
   * Records the resolve of the open query set into a buffer read by stopProfile; returns the
   * resolve target, to be destroyed once submitted.
   */
  #resolveProfile(profile: Profile): GPUBuffer {
    const bytes = 16 * profile.labels.length;
    const resolved = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#encoder!.resolveQuerySet(profile.querySet, 0, 2 * profile.labels.length, resolved, 0);
    this.#encoder!.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    profile.submitted.push({ querySet: profile.querySet, staging, labels: profile.labels });
    profile.querySet = this.#newQuerySet();
    profile.labels = [];
    return resolved;
  }

  #computePass(): GPUComputePassEncoder {
    this.#encoder ??= this.#device.createCommandEncoder();
    this.#pass ??= this.#encoder.beginComputePass();
    return this.#pass;
  }

  #copyEncoder(): GPUCommandEncoder {
    this.#pass?.end();
    this.#pass = undefined;
    this.#encoder ??= this.#device.createCommandEncoder();
    return this.#encoder;
  }

  #takeStaging(size: number): GPUBuffer {
    const bucket = Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(size, 1))));
    return this.#staging.get(bucket)?.pop() ?? this.#device.createBuffer({
      label: "readback",
      size: bucket,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  #giveStaging(buffer: GPUBuffer): void {
    let list = this.#staging.get(buffer.size);
    if (!list) this.#staging.set(buffer.size, list = []);
    list.push(buffer);
  }
}

let shared: Recorder | undefined;

/** The process-wide command recorder on the GPU from `initGpu()`: every op records through it. */
export function recorder(): Recorder {
  return shared ??= new Recorder(gpu().device);
}
