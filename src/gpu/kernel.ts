/**
 * Compute kernels as small program objects.
 *
 * A kernel declares its uniform struct, storage bindings and workgroup size once, in
 * TypeScript; the WGSL header (struct `Params`, `params`, one `var<storage>` per binding, or a
 * `var<uniform>` array or a `texture_2d<f32>` (see {@link Binding}), and the `WG` override) is
 * generated from that declaration and prepended to the body in `shaders/*.wgsl`, so the layout
 * is never written twice by hand. WGSL shared by several kernels lives once in
 * `shaders/lib/*.wgsl`; a spec lists the fragments it uses and they go between the header and
 * the body in that order. Tile and workgroup sizes are WGSL `override` constants supplied at
 * pipeline creation; the pipeline cache key is the kernel name plus every constant (the
 * workgroup size included), and the WGSL text is fixed per kernel.
 */

import gridWgsl from "../../shaders/lib/grid.wgsl" with { type: "text" };
import { gpu } from "./device.ts";
import { returnFreedHeap } from "./host_heap.ts";

export type Scalar = "u32" | "i32" | "f32";
export type StorageType =
  | "f32"
  | "u32"
  | "i32"
  | "atomic<u32>"
  | "atomic<i32>"
  /** Four floats per element; the bound buffer's size must be a multiple of 16 bytes. */
  | "vec4<f32>"
  /** Two or four words per element, e.g. pairs of packed f16 values (`unpack2x16float`). */
  | "vec2<u32>"
  | "vec4<u32>";

export interface Binding {
  name: string;
  access: "read" | "read_write";
  /** Element type of the `array<…>`; f32 by default. */
  type?: StorageType;
  /**
   * Bound as a uniform buffer, `var<uniform> name: array<type, uniformLength>`, instead of a
   * storage buffer (read only; `type` f32 is not allowed there, use vec4<f32>). The bound buffer
   * must hold at least `uniformLength` elements, within maxUniformBufferBindingSize. On a CPU
   * adapter (llvmpipe/lavapipe) a uniform load is a gather with fixed lane positions, while a
   * storage load is a loop over the lanes (see CONV_TILES in src/ops/tuning.ts).
   */
  uniformLength?: number;
  /**
   * Bound as a `texture_2d<f32>` of an unfilterable float format (rgba32float: one vec4 per
   * texel), read with `textureLoad`, instead of a storage buffer; the recorder binds a
   * GPUTextureView here (src/gpu/texture.ts keeps such textures). Read only; `type` does not
   * apply. On a CPU adapter (llvmpipe/lavapipe) a texel fetch is a load per lane, where a storage
   * load is a loop over the lanes (see inputBinding in src/ops/tuning.ts).
   */
  texture?: boolean;
}

/** Bytes of one element of a binding's array. */
export function elementBytes(type: StorageType = "f32"): number {
  return type === "vec4<f32>" || type === "vec4<u32>" ? 16 : type === "vec2<u32>" ? 8 : 4;
}

export interface KernelSpec<U extends string = string> {
  /** Unique name; with the constants it forms the pipeline cache key. */
  name: string;
  /** WGSL body (entry point `main`), using `params.<field>` and the binding names. */
  body: string;
  /** Uniform fields in struct order; each is a 4-byte scalar. */
  uniforms: Record<U, Scalar>;
  bindings: Binding[];
  /** Default values of the body's `override` constants. */
  constants?: Record<string, number>;
  /**
   * Threads per workgroup: the default of the `WG` override the header declares (a body
   * writes `@workgroup_size(WG)` and may recover its flat thread index with `threadIndex` from
   * shaders/lib/grid.wgsl, which comes with it). Absent for single-invocation kernels.
   */
  workgroupSize?: number;
  /** Shared WGSL (the text of `shaders/lib/*.wgsl` files) placed before the body, in order. */
  fragments?: readonly string[];
}

/** A kernel ready to dispatch; pipelines are created lazily per constants set. */
export interface Kernel<U extends string = string> {
  spec: KernelSpec<U>;
  /** The full WGSL text: generated header, fragments, body. */
  wgsl: string;
  /** The default workgroup size (`WG`); 1 for a single-invocation kernel. */
  workgroupSize: number;
  /**
   * The workgroup grid for `threads` threads at the `WG` of `constants` (else the default),
   * folded by {@link grid1d}.
   */
  grid(threads: number, constants?: Record<string, number>): [number, number, number];
  /** Uniform struct size in bytes (multiple of 16). */
  uniformBytes: number;
  /** Writes uniform values in struct order into `view` at `offset`. */
  packUniforms(view: DataView, offset: number, values: Record<U, number>): void;
  pipeline(constants?: Record<string, number>): GPUComputePipeline;
  /** The pipeline's name: the kernel's with every constant, e.g. `conv3d[CG=2,…,WG=64]`. */
  label(constants?: Record<string, number>): string;
  /** The bind group layout shared by every pipeline of this kernel. */
  bindGroupLayout(): GPUBindGroupLayout;
}

/** Builds the WGSL header for a spec. Exported for tests and shader inspection. */
export function wgslHeader(spec: KernelSpec): string {
  const fields = Object.entries(spec.uniforms);
  const lines: string[] = [];
  lines.push("struct Params {");
  if (fields.length === 0) lines.push("  _unused: u32,");
  for (const [name, type] of fields) lines.push(`  ${name}: ${type},`);
  lines.push("};");
  lines.push("@group(0) @binding(0) var<uniform> params: Params;");
  spec.bindings.forEach((b, i) => {
    const type = b.type ?? "f32";
    const at = `@group(0) @binding(${i + 1})`;
    lines.push(
      b.texture
        ? `${at} var ${b.name}: texture_2d<f32>;`
        : b.uniformLength
        ? `${at} var<uniform> ${b.name}: array<${type}, ${b.uniformLength}>;`
        : `${at} var<storage, ${b.access}> ${b.name}: array<${type}>;`,
    );
  });
  if (spec.workgroupSize !== undefined) {
    lines.push(`override WG: u32 = ${spec.workgroupSize}u;`);
    lines.push(gridWgsl.trimEnd());
  }
  return lines.join("\n") + "\n";
}

/**
 * Declares a kernel.
 *
 * @example
 * const scale = defineKernel({
 *   name: "scale",
 *   body: scaleWgsl,
 *   uniforms: { n: "u32", alpha: "f32" },
 *   bindings: [{ name: "x", access: "read" }, { name: "y", access: "read_write" }],
 *   workgroupSize: 64,
 * });
 * recorder().dispatch(scale, { n, alpha: 2 }, [x.buffer, y.buffer], scale.grid(n));
 */
export function defineKernel<U extends string>(declared: KernelSpec<U>): Kernel<U> {
  const wg = declared.workgroupSize;
  if (wg !== undefined && !(Number.isInteger(wg) && wg > 0)) {
    throw new Error(`kernel ${declared.name}: workgroupSize must be a positive integer, got ${wg}`);
  }
  if (wg !== undefined && declared.constants?.WG !== undefined) {
    throw new Error(`kernel ${declared.name}: give the workgroup size as workgroupSize, not WG`);
  }
  // The workgroup size is a constant like the tiles: it names the pipeline in the cache key.
  const spec: KernelSpec<U> = wg === undefined
    ? declared
    : { ...declared, constants: { WG: wg, ...declared.constants } };
  const wgsl = wgslHeader(spec as KernelSpec) + (spec.fragments ?? []).join("\n") + spec.body;
  for (const b of spec.bindings) {
    if (b.uniformLength && (b.access !== "read" || elementBytes(b.type) !== 16)) {
      throw new Error(
        `kernel ${spec.name}: uniform binding ${b.name} must be read-only vec4<f32> or vec4<u32>`,
      );
    }
    if (b.texture && (b.access !== "read" || b.uniformLength || b.type)) {
      throw new Error(
        `kernel ${spec.name}: texture binding ${b.name} must be read-only, without type or ` +
          "uniformLength",
      );
    }
  }
  const fields = Object.entries(spec.uniforms) as [U, Scalar][];
  const uniformBytes = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
  const pipelines = new Map<string, GPUComputePipeline>();
  let module: GPUShaderModule | undefined;
  let layouts: { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } | undefined;
  const getLayouts = () => layouts ??= explicitLayouts(gpu().device, spec as KernelSpec);

  return {
    spec,
    wgsl,
    uniformBytes,
    workgroupSize: wg ?? 1,
    grid(threads, constants) {
      return grid1d(Math.ceil(threads / (constants?.WG ?? wg ?? 1)));
    },
    packUniforms(view, offset, values) {
      fields.forEach(([name, type], i) => {
        const v = values[name];
        if (typeof v !== "number" || Number.isNaN(v) && type !== "f32") {
          throw new Error(`kernel ${spec.name}: uniform ${name} must be a number, got ${v}`);
        }
        const at = offset + i * 4;
        if (type === "f32") view.setFloat32(at, v, true);
        else if (type === "u32") view.setUint32(at, v >>> 0, true);
        else view.setInt32(at, v | 0, true);
      });
    },
    bindGroupLayout() {
      return getLayouts().group;
    },
    label(constants) {
      return `${spec.name}[${constantsKey({ ...spec.constants, ...constants })}]`;
    },
    pipeline(constants) {
      const merged = { ...spec.constants, ...constants };
      const key = constantsKey(merged);
      let p = pipelines.get(key);
      if (!p) {
        const device = gpu().device;
        module ??= device.createShaderModule({ label: spec.name, code: wgsl });
        p = device.createComputePipeline({
          label: `${spec.name}[${key}]`,
          layout: getLayouts().pipeline,
          compute: { module, entryPoint: "main", constants: merged },
        });
        // The compile's scratch memory (hundreds of MB on a software adapter) goes back.
        returnFreedHeap();
        pipelines.set(key, p);
      }
      return p;
    },
  };
}

/** Every constant as `NAME=value`, sorted by name: the pipeline cache key. */
function constantsKey(constants: Record<string, number>): string {
  return Object.keys(constants).sort().map((k) => `${k}=${constants[k]}`).join(",");
}

/**
 * Workgroup grid for `groups` workgroups along one logical axis, folded into x and y so no
 * dimension exceeds `maxPerDim`. Shaders recover the flat workgroup index as
 * `wid.x + wid.y * nwg.x`.
 */
export function grid1d(groups: number, maxPerDim = 65535): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** An explicit layout, so bindings a shader variant leaves unused do not break bind groups. */
function explicitLayouts(
  device: GPUDevice,
  spec: KernelSpec,
): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
  const entries: GPUBindGroupLayoutEntry[] = [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
    ...spec.bindings.map((b, i): GPUBindGroupLayoutEntry =>
      b.texture
        ? {
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          texture: { sampleType: "unfilterable-float", viewDimension: "2d" },
        }
        : {
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: {
            type: b.uniformLength
              ? "uniform"
              : b.access === "read"
              ? "read-only-storage"
              : "storage",
          },
        }
    ),
  ];
  const group = device.createBindGroupLayout({ label: spec.name, entries });
  const pipeline = device.createPipelineLayout({ label: spec.name, bindGroupLayouts: [group] });
  return { group, pipeline };
}
