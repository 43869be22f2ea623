/**
 * Times one conv3d forward case on the checkout at `$ROOT` (default: this one), for A/B runs
 * of two commits side by side (./run.sh): warm-up, then SAMPLES samples of CALLS calls; prints
 * a JSON line with the median milliseconds per call and this process's CPU milliseconds per
 * call (user + system: on a software adapter the shader invocations run on its threads).
 *
 *   ROOT=/path/to/checkout deno run -A --unstable-webgpu bench/ab/conv_time.ts [CALLS] [SAMPLES] [CI,CO,S]
 *
 * Default case: the U-Net's first layer, Ci=1 → Co=16 at 64³. Only APIs that every commit since
 * the first has (src/gpu/mod.ts, src/ops/conv3d.ts) are used.
 */

const root = Deno.env.get("ROOT") ?? new URL("../..", import.meta.url).pathname;
const calls = Number(Deno.args[0] ?? "20"), samples = Number(Deno.args[1] ?? "5");
const [ci, co, s] = (Deno.args[2] ?? "1,16,64").split(",").map(Number);
const gpu = await import(`${root}/src/gpu/mod.ts`);
const conv = await import(`${root}/src/ops/conv3d.ts`);
await gpu.initGpu();
const recorder = gpu.recorder ?? gpu.commands;

function filled(shape: number[]) {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37);
  return gpu.fromArray(shape, data);
}

function cpuMs(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const x = filled([1, ci, s, s, s]), w = filled([co, ci, 3, 3, 3]);
async function msPerCall(n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) gpu.scope(() => conv.conv3d(x, w, null));
  await recorder().sync();
  return (performance.now() - t0) / n;
}

await msPerCall(3);
const c0 = cpuMs();
const times: number[] = [];
for (let i = 0; i < samples; i++) times.push(await msPerCall(calls));
times.sort((a, b) => a - b);
console.log(JSON.stringify({
  ms: times[Math.floor(samples / 2)],
  cpuMs: (cpuMs() - c0) / (calls * samples),
}));
