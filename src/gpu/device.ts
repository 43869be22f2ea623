/**
 * Adapter and device acquisition.
 *
 * voxseg asks for the adapter's full limits rather than WebGPU's conservative defaults:
 * a 3D U-Net activation at 128³ with 32 channels is 256 MiB, far past the default 128 MiB
 * storage binding. Errors the device reports asynchronously are kept and raised at the next
 * synchronisation point (flush or readback) so a failing kernel never passes silently.
 */

/** What `voxseg info` reports about the adapter and device. */
export interface GpuInfo {
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  /** True for software adapters (llvmpipe, lavapipe, SwiftShader). */
  isFallbackAdapter: boolean;
  /** Best guess of the native API wgpu drives, from the adapter description. */
  backend: string;
  features: string[];
  limits: Record<string, number>;
}

/** The acquired device with what voxseg needs to know about it. */
export interface Gpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: GpuInfo;
  hasF16: boolean;
  hasTimestamps: boolean;
}

/** No usable WebGPU adapter on this machine; the message says what to install. */
export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

/** The device reported a validation, out-of-memory or internal error, or was lost. */
export class GpuDeviceError extends Error {
  override name = "GpuDeviceError";
}

const INSTALL_HINT = "voxseg needs a WebGPU adapter. On a GPU machine install the GPU driver " +
  "with a Vulkan loader (NVIDIA: the proprietary driver and libvulkan1; AMD/Intel: Mesa's " +
  "mesa-vulkan-drivers). On a CPU-only machine install Mesa's software Vulkan driver " +
  "(Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1) or Mesa's llvmpipe " +
  "(libgl1-mesa-dri libegl1).";

const LIMIT_NAMES = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
  "minUniformBufferOffsetAlignment",
  "minStorageBufferOffsetAlignment",
] as const;

/** Features voxseg can use when the adapter has them. */
const WANTED_FEATURES = ["shader-f16", "timestamp-query", "subgroups"] as const;

let pending: Promise<Gpu> | undefined;
let current: Gpu | undefined;
let deviceError: Error | undefined;

/**
 * Returns the process-wide GPU, acquiring it on first call.
 *
 * @example
 * const gpu = await initGpu();
 * console.log(gpu.info.description);
 */
export function initGpu(): Promise<Gpu> {
  pending ??= acquire().then((gpu) => (current = gpu)).catch((e) => {
    pending = undefined;
    throw e;
  });
  return pending;
}

/** The GPU acquired by {@link initGpu}; throws if it has not been called yet. */
export function gpu(): Gpu {
  if (!current) throw new Error("GPU not initialised: await initGpu() before using tensors or ops");
  return current;
}

/** Throws the first error the device reported since the last check, if any. */
export function throwIfDeviceError(): void {
  if (deviceError) {
    const e = deviceError;
    deviceError = undefined;
    throw e;
  }
}

async function acquire(): Promise<Gpu> {
  // Mesa's EGL probing complains on stderr when XDG_RUNTIME_DIR is unset (containers, CI).
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync());
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(`This Deno has no WebGPU (navigator.gpu). ${INSTALL_HINT}`);
  }
  const powerPreference = "high-performance";
  const adapter = await navigator.gpu.requestAdapter({ powerPreference });
  if (!adapter) throw new GpuUnavailableError(`No WebGPU adapter was found. ${INSTALL_HINT}`);

  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredLimits,
    requiredFeatures: requiredFeatures as GPUFeatureName[],
  });

  device.addEventListener("uncapturederror", (event) => {
    const err = (event as GPUUncapturedErrorEvent).error;
    deviceError ??= new GpuDeviceError(`GPU error: ${err.message}`);
  });
  device.lost.then((info) => {
    if (info.reason === "destroyed") return;
    deviceError = new GpuDeviceError(
      `GPU device lost (${info.reason}): ${info.message}. Restart the process; if it recurs, ` +
        `check the GPU driver (dmesg) or lower the patch or batch size.`,
    );
  });

  const limits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    limits[name] = (device.limits as unknown as Record<string, number>)[name];
  }
  const ai = adapter.info;
  const info: GpuInfo = {
    description: ai.description || "(no description)",
    vendor: ai.vendor,
    architecture: ai.architecture,
    device: ai.device,
    isFallbackAdapter: Boolean(
      (ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter,
    ),
    backend: guessBackend(ai.description),
    features: [...device.features].sort(),
    limits,
  };
  return {
    adapter,
    device,
    info,
    hasF16: device.features.has("shader-f16"),
    hasTimestamps: device.features.has("timestamp-query"),
  };
}

function guessBackend(description: string): string {
  const d = description.toLowerCase();
  // Mesa's software rasteriser reports "llvmpipe" through both GL and Vulkan (lavapipe).
  if (d.includes("llvmpipe") || d.includes("lavapipe")) return "software (Mesa llvmpipe/lavapipe)";
  if (d.includes("swiftshader")) return "vulkan (SwiftShader, software)";
  return "vulkan";
}
