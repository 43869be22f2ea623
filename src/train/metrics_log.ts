/**
 * A training run's numbers on disk, in its output folder:
 *
 * - `metrics.jsonl`: append-only, one JSON object per line (per step batch, per validation),
 *   each line handed to the OS as it is written, so `tail -f` and a crash both see whole lines;
 * - `summary.json`: the run's final (or latest) state, replaced atomically.
 *
 * NaN and ±Infinity, which JSON cannot hold, are written as null.
 */

import { dirname } from "node:path";
import { writeFileAtomic } from "../base/atomic.ts";

/** The metrics file's name inside a run's output folder. */
export const METRICS_FILE = "metrics.jsonl";
/** The summary file's name inside a run's output folder. */
export const SUMMARY_FILE = "summary.json";

const replacer = (_key: string, value: unknown) =>
  typeof value === "number" && !Number.isFinite(value) ? null : value;

/** Appends JSON lines to a metrics file. */
export class MetricsLog {
  readonly path: string;
  #file: Deno.FsFile | undefined;
  readonly #timestamp: boolean;
  readonly #now: () => Date;

  private constructor(path: string, file: Deno.FsFile, timestamp: boolean, now: () => Date) {
    this.path = path;
    this.#file = file;
    this.#timestamp = timestamp;
    this.#now = now;
  }

  /**
   * Opens `path` for appending, creating it (and its folder) if needed. A last line left
   * half-written by a crash is cut off, so the next record starts on a line of its own.
   *
   * `timestamp` (default true) adds `time` (ISO 8601, from `now`) to records that lack it.
   *
   * @example
   * using log = MetricsLog.open(join(config.out, METRICS_FILE));
   * log.append({ event: "train", epoch, step, loss, lr });
   */
  static open(
    path: string,
    { timestamp = true, now = () => new Date() }: { timestamp?: boolean; now?: () => Date } = {},
  ): MetricsLog {
    Deno.mkdirSync(dirname(path), { recursive: true });
    const file = Deno.openSync(path, { read: true, append: true, create: true });
    try {
      const size = file.statSync().size;
      if (size > 0) {
        const bytes = Deno.readFileSync(path);
        if (bytes[bytes.length - 1] !== 0x0a) file.truncateSync(bytes.lastIndexOf(0x0a) + 1);
      }
    } catch (e) {
      file.close();
      throw e;
    }
    return new MetricsLog(path, file, timestamp, now);
  }

  /** Writes `record` as one line, straight through to the OS. */
  append(record: Record<string, unknown>): void {
    if (!this.#file) throw new Error(`${this.path}: metrics log is closed`);
    const full = this.#timestamp && !("time" in record)
      ? { time: this.#now().toISOString(), ...record }
      : record;
    const bytes = new TextEncoder().encode(JSON.stringify(full, replacer) + "\n");
    let written = 0;
    while (written < bytes.length) written += this.#file.writeSync(bytes.subarray(written));
  }

  /** Closes the file; further appends throw. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Reads a metrics file back. A half-written last line (a crash mid-write) is ignored; any
 * other line that is not a JSON object throws, naming its line number.
 */
export async function readMetricsLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  const lines = text.split("\n");
  lines.pop(); // after the final newline: "" — or the unfinished last line
  return lines.flatMap((line, i) => {
    if (line.trim() === "") return [];
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      value = undefined;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Error(`${path}:${i + 1}: not a JSON object: ${line.slice(0, 80)}`);
    }
    return [value as Record<string, unknown>];
  });
}

/** Replaces `path` (a run's `summary.json`) atomically with `summary`, pretty-printed. */
export async function writeSummary(path: string, summary: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(summary, replacer, 2) + "\n");
}
