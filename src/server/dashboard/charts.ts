/// <reference lib="dom" />
/**
 * A training job's curves, drawn with uPlot as its events arrive: loss and learning rate per
 * step (two y axes), and validation Dice per class per validation (one line per `dice/<class>`
 * metric, in the class's overlay colour; the foreground mean dashed).
 */

import uPlot from "uplot";
import { classCss, LOSS_CSS, LR_CSS } from "./palette.ts";

const HEIGHT = 220;
const MEAN_KEY = "dice/mean_fg";
const BACKGROUND_CSS = "rgb(170, 170, 170)";
/** Integer steps only on the x axis. */
const STEP_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5];

/** One chart that redraws at most once per animation frame however fast points arrive. */
class LiveChart {
  readonly plot: uPlot;
  readonly #x: number[] = [];
  /** One array per series; null where a point has no value (a gap in the line). */
  readonly #ys: (number | null)[][];
  #pending = false;
  readonly #resize: ResizeObserver;

  /** `series` and `axes` without the x ones (added here: the training step). */
  constructor(
    target: HTMLElement,
    opts: { title: string; series: uPlot.Series[]; axes: uPlot.Axis[]; scales?: uPlot.Scales },
  ) {
    this.#ys = opts.series.map(() => []);
    this.plot = new uPlot(
      {
        title: opts.title,
        width: chartWidth(target),
        height: HEIGHT,
        series: [{ label: "step" }, ...opts.series],
        axes: [{ incrs: STEP_INCREMENTS }, ...opts.axes],
        scales: { x: { time: false }, ...opts.scales },
        cursor: { drag: { x: true, y: false } },
      },
      this.#aligned(),
      target,
    );
    this.#resize = new ResizeObserver(() =>
      this.plot.setSize({ width: chartWidth(target), height: HEIGHT })
    );
    this.#resize.observe(target);
  }

  /** Appends one x value and its y values (null where a series has none). */
  add(x: number, ys: (number | null)[]): void {
    this.#x.push(x);
    ys.forEach((y, i) => this.#ys[i].push(y));
    if (this.#pending) return;
    this.#pending = true;
    requestAnimationFrame(() => {
      this.#pending = false;
      this.plot.setData(this.#aligned());
    });
  }

  #aligned(): uPlot.AlignedData {
    return [this.#x, ...this.#ys];
  }

  destroy(): void {
    this.#resize.disconnect();
    this.plot.destroy();
  }
}

function chartWidth(target: HTMLElement): number {
  return Math.max(240, Math.floor(target.clientWidth || 600));
}

const finite = (v: unknown): number | null =>
  typeof v === "number" && Number.isFinite(v) ? v : null;

/** The loss/learning-rate chart and the Dice chart of one training job. */
export class TrainingCharts {
  readonly #lossTarget: HTMLElement;
  readonly #diceTarget: HTMLElement;
  #loss: LiveChart | undefined;
  #dice: LiveChart | undefined;
  #diceKeys: string[] = [];

  constructor(lossTarget: HTMLElement, diceTarget: HTMLElement) {
    this.#lossTarget = lossTarget;
    this.#diceTarget = diceTarget;
  }

  /** A training step: its loss and learning rate. */
  addStep(step: number, loss: unknown, lr: unknown): void {
    this.#loss ??= new LiveChart(this.#lossTarget, {
      title: "Training loss and learning rate",
      series: [
        { label: "loss", stroke: LOSS_CSS, width: 2, scale: "loss" },
        { label: "learning rate", stroke: LR_CSS, width: 1.5, dash: [6, 4], scale: "lr" },
      ],
      axes: [
        { scale: "loss", label: "loss" },
        {
          scale: "lr",
          side: 1,
          label: "learning rate",
          grid: { show: false },
          size: 70,
          values: (_u, ticks) => ticks.map((v) => v.toExponential(1)),
        },
      ],
    });
    this.#loss.add(step, [finite(loss), finite(lr)]);
  }

  /** A validation: `metrics` by name; the `dice/<class>` ones are drawn. */
  addValidation(step: number, metrics: Record<string, unknown>): void {
    const keys = Object.keys(metrics).filter((k) => k.startsWith("dice/"));
    if (keys.length === 0) return;
    if (!this.#dice || keys.some((k) => !this.#diceKeys.includes(k))) {
      // A class list the chart lacks (the first validation): start the chart over.
      this.#dice?.destroy();
      this.#diceKeys = [
        ...keys.filter((k) => k !== MEAN_KEY),
        ...keys.filter((k) => k === MEAN_KEY),
      ];
      // The per-class keys come in class order, background (class 0) first.
      let c = 0;
      this.#dice = new LiveChart(this.#diceTarget, {
        title: "Validation Dice",
        series: this.#diceKeys.map((k): uPlot.Series => {
          if (k === MEAN_KEY) {
            return {
              label: "mean (foreground)",
              stroke: "rgb(30, 30, 30)",
              width: 1.5,
              dash: [4, 4],
            };
          }
          const cls = c++;
          return {
            label: k.slice("dice/".length),
            stroke: cls === 0 ? BACKGROUND_CSS : classCss(cls),
            width: cls === 0 ? 1 : 2,
          };
        }),
        axes: [{ label: "Dice" }],
        scales: { y: { range: [0, 1] } },
      });
    }
    this.#dice.add(step, this.#diceKeys.map((k) => finite(metrics[k])));
  }

  /** Removes both charts. */
  clear(): void {
    this.#loss?.destroy();
    this.#dice?.destroy();
    this.#loss = this.#dice = undefined;
    this.#diceKeys = [];
  }
}
