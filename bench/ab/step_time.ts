/**
 * Times training steps of the `deno task train` preset (src/cli/train.ts SYNTH_PRESET: base 8,
 * depth 3, 32×64×64, batch 2) on the checkout at `$ROOT` (default: this one), for A/B runs of two
 * commits side by side (./run.sh with `STEP=1`): one compiling step, one warm-up, then SAMPLES
 * steps; prints a JSON line with the median milliseconds per step and this process's CPU
 * milliseconds per step (user + system).
 *
 *   ROOT=/path/to/checkout deno run -A --unstable-webgpu bench/ab/step_time.ts [SAMPLES]
 */

const root = Deno.env.get("ROOT") ?? new URL("../..", import.meta.url).pathname;
const samples = Number(Deno.args[0] ?? "5");
const { initGpu } = await import(`${root}/src/gpu/mod.ts`);
const { SYNTH_PRESET } = await import(`${root}/src/cli/train.ts`);
const { resolveConfig } = await import(`${root}/src/train/config/resolve.ts`);
const { TrainStepBench } = await import(`${root}/src/train/step_timing.ts`);
await initGpu();

function cpuMs(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const bench = new TrainStepBench(resolveConfig(undefined, { ...SYNTH_PRESET }), 0);
await bench.step();
await bench.step();
const c0 = cpuMs();
const times = await bench.timedSteps(0, samples);
times.sort((a: number, b: number) => a - b);
console.log(JSON.stringify({
  ms: times[Math.floor(samples / 2)],
  cpuMs: (cpuMs() - c0) / samples,
}));
bench.dispose();
