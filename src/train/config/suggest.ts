/** "Did you mean" for unknown config keys and flags: the closest known names. */

import { configAliases } from "./fields.ts";

/** Optimal-string-alignment distance: edits, with a swap of neighbours counting as one. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known names closest to `name` (case-insensitive), compared whole and, for a name without
 * dots, also with the last part of each dotted path (`patience` → `schedule.patience`).
 */
export function suggest(name: string, candidates: readonly string[]): string[] {
  const lower = name.toLowerCase();
  let best = Infinity;
  let found: string[] = [];
  for (const c of candidates) {
    const tail = c.slice(c.lastIndexOf(".") + 1).toLowerCase();
    const d = Math.min(
      editDistance(lower, c.toLowerCase()),
      lower.includes(".") ? Infinity : editDistance(lower, tail),
    );
    if (d < best) [best, found] = [d, [c]];
    else if (d === best && !found.includes(c)) found.push(c);
  }
  if (best > Math.max(2, Math.floor(name.length / 3))) return [];
  // An alias and the field it stands for are one suggestion: keep the alias.
  const targets = new Set(found.map((c) => configAliases[c]).filter(Boolean));
  return found.filter((c) => !targets.has(c)).slice(0, 3);
}

/** " (did you mean …?)" for the suggestions, or nothing when there are none. */
export function didYouMean(names: string[], show: (name: string) => string): string {
  if (names.length === 0) return "";
  return ` (did you mean ${names.map(show).join(" or ")}?)`;
}
