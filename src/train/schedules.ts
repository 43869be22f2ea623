/**
 * Learning-rate schedules. Each holds the rate for the current step in `lr`, advances with
 * `step()`, and round-trips its whole state through JSON (`state()` / `restore()`), so a
 * resumed run continues the exact sequence.
 *
 * The trainer's loop:
 *
 *   optimizerStep({ lr: schedule.lr, … }); schedule.step();   // poly, cosine, constant
 *   after a validation: schedule.step(metric);                 // plateau
 */

import type { ScheduleConfig, TrainConfig } from "./config.ts";

/** The plateau schedule's settings, as the training config's `schedule.*` fields hold them. */
type PlateauSettings = Pick<
  ScheduleConfig,
  "factor" | "patience" | "threshold" | "thresholdMode" | "cooldown" | "minLr" | "eps"
>;

/** A schedule's complete state, JSON-safe (no Infinity or NaN). */
export type ScheduleState =
  | { kind: "constant"; lr: number }
  | { kind: "poly"; lr0: number; totalSteps: number; exponent: number; t: number }
  | {
    kind: "cosine";
    lr0: number;
    totalSteps: number;
    warmupSteps: number;
    minLr: number;
    t: number;
  }
  | (
    & { kind: "plateau"; lr: number; mode: "min" | "max" }
    & PlateauSettings
    & {
      /** Best metric so far; null before the first (PyTorch's ±inf). */
      best: number | null;
      numBadEpochs: number;
      cooldownCounter: number;
      lastEpoch: number;
    }
  );

/** A learning-rate schedule. */
export interface LrSchedule {
  /** The learning rate for the current step. */
  readonly lr: number;
  /** Advances one step; plateau needs the monitored metric, the others ignore it. */
  step(metric?: number): void;
  /** Everything needed to continue exactly; JSON-safe. */
  state(): ScheduleState;
  /** Continues from a {@link state} of the same kind of schedule. */
  restore(state: ScheduleState): void;
}

/** A schedule misused or restored from the wrong state. */
export class ScheduleError extends Error {
  override name = "ScheduleError";
}

function expectKind<K extends ScheduleState["kind"]>(
  state: ScheduleState,
  kind: K,
): Extract<ScheduleState, { kind: K }> {
  if (state?.kind !== kind) {
    throw new ScheduleError(
      `cannot restore a ${kind} schedule from ${JSON.stringify(state?.kind)} state`,
    );
  }
  for (const [key, value] of Object.entries(state)) {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new ScheduleError(`${kind} schedule state: ${key} is ${value}`);
    }
  }
  return state as Extract<ScheduleState, { kind: K }>;
}

function checkPositive(name: string, value: number, integer = false): void {
  if (!(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new ScheduleError(`${name} must be a positive ${integer ? "integer" : "number"}`);
  }
}

/** The same rate at every step. */
export class ConstantLR implements LrSchedule {
  #lr: number;

  constructor(lr: number) {
    checkPositive("lr", lr);
    this.#lr = lr;
  }

  get lr(): number {
    return this.#lr;
  }

  step(): void {}

  state(): ScheduleState {
    return { kind: "constant", lr: this.#lr };
  }

  restore(state: ScheduleState): void {
    this.#lr = expectKind(state, "constant").lr;
  }
}

/**
 * A schedule whose rate is a pure function of its step counter `t` (poly, cosine): stepping
 * counts, and its state is its parameters and `t`.
 */
abstract class StepCountedLR<S extends ScheduleState & { t: number }> implements LrSchedule {
  protected s: S;

  constructor(state: S) {
    this.s = state;
  }

  abstract get lr(): number;

  step(): void {
    this.s.t++;
  }

  state(): ScheduleState {
    return { ...this.s };
  }

  restore(state: ScheduleState): void {
    this.s = { ...expectKind(state, this.s.kind) } as S;
  }
}

/**
 * nnU-Net's polynomial decay: at step t, lr0 · (1 − t/totalSteps)^exponent, reaching 0 at
 * `totalSteps` and staying there.
 */
export class PolyLR extends StepCountedLR<Extract<ScheduleState, { kind: "poly" }>> {
  constructor(
    { lr, totalSteps, exponent = 0.9 }: { lr: number; totalSteps: number; exponent?: number },
  ) {
    checkPositive("lr", lr);
    checkPositive("totalSteps", totalSteps, true);
    checkPositive("exponent", exponent);
    super({ kind: "poly", lr0: lr, totalSteps, exponent, t: 0 });
  }

  get lr(): number {
    const { lr0, totalSteps, exponent, t } = this.s;
    return lr0 * (1 - Math.min(t, totalSteps) / totalSteps) ** exponent;
  }
}

/**
 * Linear warm-up then cosine decay. For t < warmupSteps: lr0 · (t + 1)/warmupSteps (so the
 * first step is not wasted at 0 and step warmupSteps − 1 reaches lr0); then, with
 * p = (t − warmupSteps)/(totalSteps − warmupSteps), minLr + ½(lr0 − minLr)(1 + cos πp);
 * minLr from `totalSteps` on.
 */
export class WarmupCosineLR extends StepCountedLR<Extract<ScheduleState, { kind: "cosine" }>> {
  constructor(
    { lr, totalSteps, warmupSteps = 0, minLr = 0 }: {
      lr: number;
      totalSteps: number;
      warmupSteps?: number;
      minLr?: number;
    },
  ) {
    checkPositive("lr", lr);
    checkPositive("totalSteps", totalSteps, true);
    if (!Number.isInteger(warmupSteps) || warmupSteps < 0 || warmupSteps >= totalSteps) {
      throw new ScheduleError(
        `warmupSteps must be an integer in [0, totalSteps = ${totalSteps}), got ${warmupSteps}`,
      );
    }
    if (!(minLr >= 0 && minLr <= lr)) {
      throw new ScheduleError(`minLr must be in [0, lr = ${lr}], got ${minLr}`);
    }
    super({ kind: "cosine", lr0: lr, totalSteps, warmupSteps, minLr, t: 0 });
  }

  get lr(): number {
    const { lr0, totalSteps, warmupSteps, minLr, t } = this.s;
    if (t < warmupSteps) return (lr0 * (t + 1)) / warmupSteps;
    if (t >= totalSteps) return minLr;
    const p = (t - warmupSteps) / (totalSteps - warmupSteps);
    return minLr + 0.5 * (lr0 - minLr) * (1 + Math.cos(Math.PI * p));
  }
}

/** Options of {@link ReduceLROnPlateau}; defaults are PyTorch's. */
export type PlateauOptions = { lr: number; mode?: "min" | "max" } & Partial<PlateauSettings>;

/**
 * PyTorch's `ReduceLROnPlateau`, step for step. Each `step(metric)`:
 *
 * 1. better = metric < best·(1 − threshold) (min, rel) | metric < best − threshold (min, abs) |
 *    metric > best·(1 + threshold) (max, rel) | metric > best + threshold (max, abs);
 *    if better, best = metric and bad = 0, else bad += 1 (a NaN metric is never better);
 * 2. while cooling down (counter > 0): counter −= 1 and bad = 0;
 * 3. if bad > patience: new = max(lr·factor, minLr), applied only if lr − new > eps;
 *    counter = cooldown; bad = 0.
 */
export class ReduceLROnPlateau implements LrSchedule {
  #s: Extract<ScheduleState, { kind: "plateau" }>;

  constructor(
    {
      lr,
      mode = "min",
      factor = 0.1,
      patience = 10,
      threshold = 1e-4,
      thresholdMode = "rel",
      cooldown = 0,
      minLr = 0,
      eps = 1e-8,
    }: PlateauOptions,
  ) {
    checkPositive("lr", lr);
    if (!(factor > 0 && factor < 1)) {
      throw new ScheduleError(`factor must be in (0, 1), got ${factor}`);
    }
    for (const [name, v] of [["patience", patience], ["cooldown", cooldown]] as const) {
      if (!Number.isInteger(v) || v < 0) {
        throw new ScheduleError(`${name} must be an integer ≥ 0, got ${v}`);
      }
    }
    for (const [name, v] of [["threshold", threshold], ["minLr", minLr], ["eps", eps]] as const) {
      if (!(v >= 0) || !Number.isFinite(v)) {
        throw new ScheduleError(`${name} must be a number ≥ 0, got ${v}`);
      }
    }
    this.#s = {
      kind: "plateau",
      lr,
      mode,
      factor,
      patience,
      threshold,
      thresholdMode,
      cooldown,
      minLr,
      eps,
      best: null,
      numBadEpochs: 0,
      cooldownCounter: 0,
      lastEpoch: 0,
    };
  }

  get lr(): number {
    return this.#s.lr;
  }

  /** The best metric seen so far (±Infinity before the first, as in PyTorch). */
  get best(): number {
    return this.#s.best ?? (this.#s.mode === "min" ? Infinity : -Infinity);
  }

  #isBetter(a: number): boolean {
    const { mode, thresholdMode, threshold } = this.#s;
    const best = this.best;
    if (mode === "min") {
      return thresholdMode === "rel" ? a < best * (1 - threshold) : a < best - threshold;
    }
    return thresholdMode === "rel" ? a > best * (threshold + 1) : a > best + threshold;
  }

  step(metric?: number): void {
    if (typeof metric !== "number") {
      throw new ScheduleError("ReduceLROnPlateau.step needs the monitored metric");
    }
    const s = this.#s;
    s.lastEpoch++;
    if (this.#isBetter(metric)) {
      s.best = metric;
      s.numBadEpochs = 0;
    } else {
      s.numBadEpochs++;
    }
    if (s.cooldownCounter > 0) {
      s.cooldownCounter--;
      s.numBadEpochs = 0;
    }
    if (s.numBadEpochs > s.patience) {
      const reduced = Math.max(s.lr * s.factor, s.minLr);
      if (s.lr - reduced > s.eps) s.lr = reduced;
      s.cooldownCounter = s.cooldown;
      s.numBadEpochs = 0;
    }
  }

  state(): ScheduleState {
    return { ...this.#s };
  }

  restore(state: ScheduleState): void {
    this.#s = { ...expectKind(state, "plateau") };
  }
}

/**
 * The schedule a training config asks for, at step 0: poly and cosine span
 * epochs × itersPerEpoch optimizer steps; plateau watches `config.monitor` (Dice: max, loss: min).
 */
export function createSchedule(config: TrainConfig): LrSchedule {
  const s = config.schedule;
  const lr = config.optimizer.lr;
  const totalSteps = config.epochs * config.itersPerEpoch;
  switch (s.kind) {
    case "constant":
      return new ConstantLR(lr);
    case "poly":
      return new PolyLR({ lr, totalSteps, exponent: s.exponent });
    case "cosine":
      return new WarmupCosineLR({ lr, totalSteps, warmupSteps: s.warmupSteps, minLr: s.minLr });
    case "plateau":
      return new ReduceLROnPlateau({
        lr,
        mode: config.monitor === "dice" ? "max" : "min",
        factor: s.factor,
        patience: s.patience,
        threshold: s.threshold,
        thresholdMode: s.thresholdMode,
        cooldown: s.cooldown,
        minLr: s.minLr,
        eps: s.eps,
      });
  }
}
