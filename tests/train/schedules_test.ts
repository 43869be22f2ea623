import { assertEquals, assertThrows } from "./assert.ts";
import {
  ConstantLR,
  createSchedule,
  type LrSchedule,
  PolyLR,
  ReduceLROnPlateau,
  ScheduleError,
  WarmupCosineLR,
} from "../../src/train/schedules.ts";
import { resolveConfig } from "../../src/train/config.ts";

/** The rate used at each step, stepping with `metrics[i]` after step i. */
function run(s: LrSchedule, steps: number, metrics: (number | undefined)[] = []): number[] {
  const lrs: number[] = [];
  for (let i = 0; i < steps; i++) {
    lrs.push(s.lr);
    s.step(metrics[i]);
  }
  return lrs;
}

/** The rate after each `step(metric)`, as PyTorch's `get_last_lr()` after `scheduler.step`. */
function plateau(s: ReduceLROnPlateau, metrics: number[]): number[] {
  return metrics.map((m) => {
    s.step(m);
    return s.lr;
  });
}

function assertClose(actual: number[], expected: number[], tol = 1e-12) {
  assertEquals(actual.length, expected.length);
  actual.forEach((a, i) => {
    if (Math.abs(a - expected[i]) > tol) {
      throw new Error(`step ${i}: ${a} ≠ ${expected[i]}\n${actual}\n${expected}`);
    }
  });
}

Deno.test("constant: the same rate at every step, metric ignored", () => {
  assertEquals(run(new ConstantLR(0.02), 4, [1, 2, 3, 4]), [0.02, 0.02, 0.02, 0.02]);
});

Deno.test("poly: lr0·(1 − t/T)^p, 0 at T and after", () => {
  assertEquals(run(new PolyLR({ lr: 1, totalSteps: 4, exponent: 1 }), 6), [
    1,
    0.75,
    0.5,
    0.25,
    0,
    0,
  ]);
  assertEquals(run(new PolyLR({ lr: 1, totalSteps: 4, exponent: 2 }), 5), [
    1,
    0.5625,
    0.25,
    0.0625,
    0,
  ]);
  // nnU-Net: lr0 = 0.01, exponent 0.9.
  assertEquals(run(new PolyLR({ lr: 0.01, totalSteps: 4 }), 5), [
    0.01,
    0.01 * 0.75 ** 0.9,
    0.01 * 0.5 ** 0.9,
    0.01 * 0.25 ** 0.9,
    0,
  ]);
});

Deno.test("cosine: linear warm-up to lr0, half a cosine to minLr, minLr after", () => {
  const c = Math.SQRT1_2; // cos(π/4)
  assertClose(run(new WarmupCosineLR({ lr: 1, totalSteps: 6, warmupSteps: 2 }), 8), [
    0.5, // warm-up (t + 1)/2
    1,
    1, // p = 0
    0.5 * (1 + c), // p = 1/4
    0.5, // p = 1/2
    0.5 * (1 - c), // p = 3/4
    0, // t = T
    0,
  ]);
  assertClose(run(new WarmupCosineLR({ lr: 1, totalSteps: 2, minLr: 0.1 }), 3), [1, 0.55, 0.1]);
  assertThrows(
    () => new WarmupCosineLR({ lr: 1, totalSteps: 2, warmupSteps: 2 }),
    ScheduleError,
    "warmupSteps",
  );
});

Deno.test("plateau (min, threshold 0): reduces after `patience` bad epochs, counting restarts on improvement", () => {
  const s = new ReduceLROnPlateau({ lr: 1, factor: 0.5, patience: 2, threshold: 0 });
  // best 10, 9 | bad 1, 2, 3 → ×0.5 | 8 better | bad 1, 2, 3 → ×0.5
  assertEquals(plateau(s, [10, 9, 9, 9, 9, 8, 8, 8, 8]), [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]);
  assertEquals(s.best, 8);
});

Deno.test("plateau cooldown: bad epochs are not counted while cooling down", () => {
  const s = new ReduceLROnPlateau({ lr: 1, factor: 0.1, patience: 1, cooldown: 2 });
  // e1 best; e2 bad 1; e3 bad 2 > 1 → 0.1, cooldown 2; e4, e5 cooling (bad reset);
  // e6 bad 1; e7 bad 2 → 0.1·0.1, cooldown 2; e8, e9 cooling; e10 bad 1.
  const lrs = plateau(s, new Array(10).fill(5));
  assertEquals(lrs, [1, 1, 0.1, 0.1, 0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1]);
});

Deno.test("plateau cooldown: an improvement during cooldown still sets best", () => {
  const s = new ReduceLROnPlateau({ lr: 1, factor: 0.5, patience: 0, cooldown: 1, threshold: 0 });
  // e1 best 3; e2 bad 1 > 0 → 0.5, cooldown 1; e3 better (2), cooling; e4 bad 1 → 0.25
  assertEquals(plateau(s, [3, 3, 2, 2]), [1, 0.5, 0.5, 0.25]);
  assertEquals(s.best, 2);
});

Deno.test("plateau threshold rel (default 1e-4): min needs a < best·(1 − 1e-4)", () => {
  const s = new ReduceLROnPlateau({ lr: 1, factor: 0.5, patience: 0 });
  s.step(1); // best 1
  s.step(0.99995); // not below 0.9999: bad → reduce
  assertEquals([s.lr, s.best], [0.5, 1]);
  s.step(0.9999 - 1e-12); // below 0.9999: better
  assertEquals([s.lr, s.best], [0.5, 0.9999 - 1e-12]);
  const m = new ReduceLROnPlateau({ lr: 1, mode: "max", factor: 0.5, patience: 0 });
  m.step(0.5); // best 0.5; better needs > 0.5·1.0001 = 0.50005
  m.step(0.50004);
  assertEquals([m.lr, m.best], [0.5, 0.5]);
  m.step(0.50006);
  assertEquals([m.lr, m.best], [0.5, 0.50006]);
});

Deno.test("plateau threshold abs: best ± threshold; NaN is never better", () => {
  const s = new ReduceLROnPlateau({
    lr: 1,
    mode: "max",
    factor: 0.5,
    patience: 1,
    threshold: 0.1,
    thresholdMode: "abs",
  });
  // best 0.5; 0.55 (≤ 0.6) bad 1; 0.61 better; NaN bad 1; NaN bad 2 → 0.5
  assertEquals(plateau(s, [0.5, 0.55, 0.61, NaN, NaN]), [1, 1, 1, 1, 0.5]);
  assertEquals(s.best, 0.61);
  const mn = new ReduceLROnPlateau({
    lr: 1,
    factor: 0.5,
    patience: 0,
    threshold: 0.1,
    thresholdMode: "abs",
  });
  assertEquals(plateau(mn, [1, 0.95, 0.85]), [1, 0.5, 0.5]);
  assertEquals(mn.best, 0.85);
});

Deno.test("plateau min_lr floors the rate; eps skips reductions too small to matter", () => {
  const s = new ReduceLROnPlateau({ lr: 1e-3, patience: 0, minLr: 5e-5 });
  assertEquals(plateau(s, [1, 1, 1, 1]), [1e-3, 1e-3 * 0.1, 5e-5, 5e-5]);
  const tiny = new ReduceLROnPlateau({ lr: 1e-8, factor: 0.5, patience: 0 });
  assertEquals(plateau(tiny, [1, 1]), [1e-8, 1e-8]); // 1e-8 − 5e-9 is not > eps 1e-8
  const noEps = new ReduceLROnPlateau({ lr: 1e-8, factor: 0.5, patience: 0, eps: 0 });
  assertEquals(plateau(noEps, [1, 1]), [1e-8, 5e-9]);
});

Deno.test("plateau: step without a metric and bad options are errors", () => {
  assertThrows(
    () => new ReduceLROnPlateau({ lr: 1 }).step(),
    ScheduleError,
    "needs the monitored metric",
  );
  assertThrows(
    () => new ReduceLROnPlateau({ lr: 1, factor: 1 }),
    ScheduleError,
    "factor must be in (0, 1)",
  );
  assertThrows(() => new ReduceLROnPlateau({ lr: 1, patience: -1 }), ScheduleError, "patience");
});

Deno.test("state/restore through JSON resumes every schedule exactly", () => {
  const metrics = [5, 4, 4, 4, 3.9999, 4, 4, 4, 4, 2, 2, 2, 2, 2];
  const makers: [string, () => LrSchedule][] = [
    ["constant", () => new ConstantLR(0.1)],
    ["poly", () => new PolyLR({ lr: 0.01, totalSteps: 10 })],
    ["cosine", () => new WarmupCosineLR({ lr: 0.01, totalSteps: 10, warmupSteps: 3, minLr: 1e-4 })],
    ["plateau", () => new ReduceLROnPlateau({ lr: 0.01, patience: 1, cooldown: 1, factor: 0.5 })],
  ];
  for (const [name, make] of makers) {
    const whole = run(make(), metrics.length, metrics);
    const first = make();
    const head = run(first, 6, metrics);
    const saved = JSON.parse(JSON.stringify(first.state()));
    const second = make();
    second.restore(saved);
    const tail = run(second, metrics.length - 6, metrics.slice(6));
    assertEquals([...head, ...tail], whole, name);
  }
  // Before any metric, best is ±inf: it must survive JSON (which has no Infinity).
  const fresh = JSON.parse(JSON.stringify(new ReduceLROnPlateau({ lr: 1, mode: "max" }).state()));
  const r = new ReduceLROnPlateau({ lr: 1 });
  r.restore(fresh);
  assertEquals(r.best, -Infinity);
});

Deno.test("restore refuses another kind's state", () => {
  assertThrows(
    () => new PolyLR({ lr: 1, totalSteps: 2 }).restore(new ConstantLR(1).state()),
    ScheduleError,
    'cannot restore a poly schedule from "constant" state',
  );
});

Deno.test("createSchedule follows the config: total steps, monitor direction", () => {
  const poly = createSchedule(
    resolveConfig(undefined, { epochs: "2", itersPerEpoch: "5", lr: "0.5" }),
  );
  assertEquals(poly.state(), { kind: "poly", lr0: 0.5, totalSteps: 10, exponent: 0.9, t: 0 });
  const mode = (s: LrSchedule) => {
    const st = s.state();
    return st.kind === "plateau" ? [st.mode, st.patience] : [];
  };
  assertEquals(mode(createSchedule(resolveConfig(undefined, { schedule: "plateau" }))), [
    "max",
    10,
  ]);
  const flags = { schedule: "plateau", monitor: "loss", "schedule.patience": "3" };
  assertEquals(mode(createSchedule(resolveConfig(undefined, flags))), ["min", 3]);
  const cosine = createSchedule(
    resolveConfig(undefined, { schedule: "cosine", "schedule.warmupSteps": "7" }),
  );
  assertEquals(cosine.state(), {
    kind: "cosine",
    lr0: 1e-3,
    totalSteps: 5000,
    warmupSteps: 7,
    minLr: 0,
    t: 0,
  });
});

Deno.test("plateau replays PyTorch's own ReduceLROnPlateau runs bit for bit", async () => {
  // Recorded by plateau_pytorch.py (PyTorch 1.13): random options, plateaus, near-threshold moves.
  const { cases } = JSON.parse(
    await Deno.readTextFile(new URL("./plateau_pytorch.json", import.meta.url)),
  ) as {
    cases: {
      lr: number;
      options: Record<string, number | string>;
      metrics: number[];
      lrs: number[];
    }[];
  };
  let reductions = 0;
  for (const [i, c] of cases.entries()) {
    const o = c.options;
    const s = new ReduceLROnPlateau({
      lr: c.lr,
      mode: o.mode as "min" | "max",
      factor: o.factor as number,
      patience: o.patience as number,
      threshold: o.threshold as number,
      thresholdMode: o.threshold_mode as "rel" | "abs",
      cooldown: o.cooldown as number,
      minLr: o.min_lr as number,
      eps: o.eps as number,
    });
    assertEquals(plateau(s, c.metrics), c.lrs, `case ${i}: ${JSON.stringify(o)}`);
    reductions += new Set(c.lrs).size - 1;
  }
  assertEquals(cases.length, 30);
  assertEquals(reductions > 50, true); // the recording exercises reductions, not just constants
});
