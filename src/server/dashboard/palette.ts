/**
 * Colours: one per segmentation class, shared by the slice overlay and the Dice chart so a
 * class looks the same in both, and the training curves'. Class 0 (background) is never drawn.
 */

/** RGB of class 1, 2, …; classes beyond the list reuse it in order. */
export const CLASS_RGB: readonly (readonly [number, number, number])[] = [
  [230, 25, 25], // red
  [30, 200, 60], // green
  [40, 110, 240], // blue
  [250, 150, 0], // orange
  [170, 60, 200], // purple
  [0, 200, 200], // teal
  [240, 50, 170], // magenta
  [150, 100, 40], // brown
];

/** The colour of class `c` (c ≥ 1) as an RGB triple. */
export function classRgb(c: number): readonly [number, number, number] {
  return CLASS_RGB[(Math.max(1, c) - 1) % CLASS_RGB.length];
}

/** The colour of class `c` (c ≥ 1) as CSS. */
export function classCss(c: number): string {
  const [r, g, b] = classRgb(c);
  return `rgb(${r}, ${g}, ${b})`;
}

/** Training curves: loss and learning rate. */
export const LOSS_CSS = "rgb(20, 90, 200)";
export const LR_CSS = "rgb(120, 120, 120)";
