/**
 * Durations as people write them for a time budget: `15m`, `90s`, `1h30m`, or plain seconds
 * (`900`, `2.5`). Shared by the command line (`--time-budget`) and the server (`timeBudget`).
 */

/**
 * Seconds of a duration such as `15m`, `90s`, `1h30m` or `900` (seconds); undefined when the
 * text is not one. Zero (`0m`) is 0: a caller that needs time says so.
 *
 * @example
 * parseDuration("1h30m"); // 5400
 */
export function parseDuration(value: string | number): number | undefined {
  const text = String(value).trim();
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1 };
  const plain = /^\d+(\.\d+)?$/.test(text);
  const parts = plain ? [[text, text, "s"]] : [...text.matchAll(/(\d+(?:\.\d+)?)([hms])/g)];
  if (parts.length === 0 || (!plain && parts.map((p) => p[0]).join("") !== text)) {
    return undefined;
  }
  let seconds = 0;
  for (const p of parts) seconds += Number(p[1]) * unit[p[2]];
  return Number.isFinite(seconds) ? seconds : undefined;
}
