/** Shape checks shared by the op host wrappers. Messages print the offending shapes. */

/** Throws unless `shape` has `rank` dimensions. */
export function assertRank(op: string, what: string, shape: readonly number[], rank: number): void {
  if (shape.length !== rank) {
    throw new Error(`${op}: ${what} must have ${rank} dimensions, got [${shape.join(", ")}]`);
  }
}

/** Throws unless the two shapes are identical. */
export function assertSameShape(
  op: string,
  a: readonly number[],
  b: readonly number[],
): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
    throw new Error(`${op}: shapes differ, [${a.join(", ")}] vs [${b.join(", ")}]`);
  }
}

/** Product of dimensions. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
