/**
 * Progress of long work (training, conversion, inference) in three forms:
 *
 * - on a terminal, one bar line redrawn in place, at most ~10 times a second;
 * - elsewhere (logs, CI), a plain line now and then (every 10 s by default);
 * - with `--json`, one JSON object per line: `{"event":"progress",…}`, `{"event":"log",…}`,
 *   `{"event":"done",…}` (at most one progress line a second by default).
 *
 * Other output goes through {@link Progress.log} so that it does not tear the bar.
 */

/** What the trainer reports; every field optional, later updates merge into earlier ones. */
export interface ProgressFields {
  /** Current epoch, 1-based, and the number of epochs. */
  epoch?: number;
  epochs?: number;
  /** Steps done in the current epoch (or overall, without epochs) and its step count. */
  step?: number;
  total?: number;
  loss?: number;
  lr?: number;
  /** Measured by the caller; otherwise derived from the step rate × `batchSize`. */
  patchesPerSec?: number;
  /** Seconds left; otherwise derived from the step rate. */
  etaSec?: number;
  /** A short label such as "train" or "val". */
  phase?: string;
}

/** How a {@link Progress} writes; every option has a default for the real terminal. */
export interface ProgressOptions {
  /** Where text goes; default standard output. */
  write?: (text: string) => void;
  /** Redraw a bar in place; default: whether standard output is a terminal. */
  isTTY?: boolean;
  /** One JSON object per line instead of text. */
  json?: boolean;
  /** Clock in milliseconds; default `performance.now`. */
  now?: () => number;
  /** Terminal width the bar line is cut to; default the console's, else 80. */
  columns?: number;
  /** Patches per step, to turn the step rate into patches/s. Default 1. */
  batchSize?: number;
  /** Least time between outputs; default 100 ms (terminal), 1 s (JSON), 10 s (plain). */
  intervalMs?: number;
}

const encoder = new TextEncoder();

function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** `3725` → `1h02m`, `185` → `3m05s`, `42.4` → `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h${two(m)}m`;
  if (m > 0) return `${m}m${two(r)}s`;
  return `${r}s`;
}

/** Four significant digits, exponent form for very large or small magnitudes; NaN as is. */
function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e5 || Math.abs(x) < 1e-3)) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

/** JSON with NaN/±Infinity as null (JSON has no such numbers). */
function toJsonLine(value: Record<string, unknown>): string {
  return JSON.stringify(
    value,
    (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
  ) +
    "\n";
}

/** A progress reporter; see the module comment for its three forms. */
export class Progress {
  readonly #write: (text: string) => void;
  readonly #isTTY: boolean;
  readonly #json: boolean;
  readonly #now: () => number;
  readonly #columns: number;
  readonly #batchSize: number;
  readonly #intervalMs: number;
  readonly #start: number;
  #fields: ProgressFields = {};
  #first: { t: number; g: number } | undefined;
  #lastOutput = -Infinity;
  #barShown = false;

  constructor(options: ProgressOptions = {}) {
    this.#write = options.write ?? writeStdout;
    this.#json = options.json ?? false;
    this.#isTTY = !this.#json && (options.isTTY ?? Deno.stdout.isTerminal());
    this.#now = options.now ?? (() => performance.now());
    this.#columns = options.columns ?? consoleColumns();
    this.#batchSize = options.batchSize ?? 1;
    this.#intervalMs = options.intervalMs ?? (this.#json ? 1000 : this.#isTTY ? 100 : 10_000);
    this.#start = this.#now();
  }

  /** Merges `fields` into the current state and outputs it if enough time has passed. */
  update(fields: ProgressFields): void {
    this.#fields = { ...this.#fields, ...fields };
    const t = this.#now();
    const g = this.#globalStep();
    if (g !== undefined && (this.#first === undefined || g < this.#first.g)) {
      this.#first = { t, g };
    }
    if (t - this.#lastOutput < this.#intervalMs) return;
    this.#lastOutput = t;
    if (this.#json) this.#write(toJsonLine({ event: "progress", ...this.#snapshot(t) }));
    else if (this.#isTTY) this.#drawBar(t);
    else this.#write(this.#describe(t, false) + "\n");
  }

  /** Prints a line of its own (above the bar on a terminal). */
  log(line: string): void {
    if (this.#json) {
      this.#write(toJsonLine({ event: "log", message: line }));
    } else if (this.#isTTY && this.#barShown) {
      this.#write(`\r\x1b[K${line}\n`);
      this.#drawBar(this.#now());
    } else {
      this.#write(line + "\n");
    }
  }

  /** Ends the report: removes the bar and prints `summary` with the elapsed time. */
  done(summary: Record<string, unknown> = {}): void {
    const elapsedSec = (this.#now() - this.#start) / 1000;
    if (this.#json) {
      this.#write(toJsonLine({ event: "done", elapsedSec, ...summary }));
      return;
    }
    const parts = Object.entries(summary).map(([k, v]) =>
      `${k} ${
        typeof v === "number" ? formatNumber(v) : typeof v === "string" ? v : JSON.stringify(v)
      }`
    );
    const line = [`done in ${formatDuration(elapsedSec)}`, ...parts].join("  ");
    this.#write((this.#barShown ? "\r\x1b[K" : "") + line + "\n");
    this.#barShown = false;
  }

  /** Steps since the start of the run: (epoch − 1)·total + step when epochs are known. */
  #globalStep(): number | undefined {
    const { epoch, epochs, step, total } = this.#fields;
    if (step === undefined) return undefined;
    return epoch !== undefined && epochs !== undefined && total !== undefined
      ? (epoch - 1) * total + step
      : step;
  }

  /** The current fields plus derived rate and ETA. */
  #snapshot(t: number): ProgressFields {
    const f = { ...this.#fields };
    const g = this.#globalStep();
    const first = this.#first;
    if (g === undefined || first === undefined || t <= first.t || g <= first.g) return f;
    const stepsPerSec = ((g - first.g) * 1000) / (t - first.t);
    f.patchesPerSec ??= stepsPerSec * this.#batchSize;
    const { epochs, total } = f;
    const end = total === undefined
      ? undefined
      : epochs !== undefined && f.epoch !== undefined
      ? epochs * total
      : total;
    if (end !== undefined) f.etaSec ??= Math.max(0, end - g) / stepsPerSec;
    return f;
  }

  #describe(t: number, bar: boolean): string {
    const f = this.#snapshot(t);
    const parts: string[] = [];
    if (f.phase) parts.push(f.phase);
    if (f.epoch !== undefined) {
      parts.push(`epoch ${f.epoch}${f.epochs !== undefined ? `/${f.epochs}` : ""}`);
    }
    if (f.step !== undefined) {
      if (bar && f.total) {
        const width = 20, filled = Math.min(width, Math.floor((width * f.step) / f.total));
        const head = filled < width ? ">" : "";
        parts.push(`[${"=".repeat(filled)}${head}${" ".repeat(width - filled - head.length)}]`);
      }
      const prefix = bar && f.total ? "" : "step ";
      parts.push(`${prefix}${f.step}${f.total !== undefined ? `/${f.total}` : ""}`);
    }
    if (f.loss !== undefined) parts.push(`loss ${formatNumber(f.loss)}`);
    if (f.lr !== undefined) parts.push(`lr ${f.lr.toExponential(1)}`);
    if (f.patchesPerSec !== undefined) parts.push(`${f.patchesPerSec.toFixed(1)} patches/s`);
    if (f.etaSec !== undefined) parts.push(`ETA ${formatDuration(f.etaSec)}`);
    return parts.join("  ");
  }

  #drawBar(t: number): void {
    // Cut to the width: a wrapped line could not be redrawn in place.
    const line = this.#describe(t, true).slice(0, Math.max(1, this.#columns - 1));
    this.#write(`\r${line}\x1b[K`);
    this.#barShown = true;
  }
}

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}
