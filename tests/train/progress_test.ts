import { assertEquals } from "./assert.ts";
import { formatDuration, Progress, type ProgressOptions } from "../../src/cli/progress.ts";

/** A Progress writing into an array, on a clock the test moves. */
function harness(options: ProgressOptions) {
  const out: string[] = [];
  let t = 0;
  const progress = new Progress({ write: (s) => out.push(s), now: () => t, ...options });
  return {
    progress,
    out,
    at(ms: number) {
      t = ms;
    },
  };
}

Deno.test("formatDuration", () => {
  assertEquals(
    [formatDuration(42.4), formatDuration(185), formatDuration(3725), formatDuration(NaN)],
    ["42s", "3m05s", "1h02m", "?"],
  );
});

Deno.test("progress on a TTY: one bar redrawn in place, throttled to 100 ms, with rate and ETA", () => {
  const h = harness({ isTTY: true, columns: 200, batchSize: 2 });
  h.progress.update({ epoch: 1, epochs: 2, step: 0, total: 100, loss: 1.5, lr: 3e-4 });
  assertEquals(h.out, ["\repoch 1/2  [>                   ]  0/100  loss 1.5  lr 3.0e-4\x1b[K"]);
  h.at(50);
  h.progress.update({ step: 1 }); // within 100 ms of the last draw: skipped
  assertEquals(h.out.length, 1);
  h.at(10_000);
  h.progress.update({ step: 50, loss: 0.41234 });
  // 50 steps in 10 s = 5 steps/s = 10 patches/s; 150 of 200 steps left → 30 s.
  assertEquals(
    h.out[1],
    "\repoch 1/2  [==========>         ]  50/100  loss 0.4123  lr 3.0e-4  10.0 patches/s  ETA 30s\x1b[K",
  );
  h.at(20_000);
  h.progress.update({ epoch: 2, step: 0 }); // 100 of 200 in 20 s: still 5 steps/s → 20 s left
  assertEquals(
    h.out[2].includes("epoch 2/2  [>                   ]  0/100") && h.out[2].includes("ETA 20s"),
    true,
  );
});

Deno.test("progress on a TTY: log lines go above the bar; done clears it", () => {
  const h = harness({ isTTY: true, columns: 200 });
  h.progress.log("before any bar");
  h.progress.update({ step: 3, total: 10 });
  h.progress.log("validation dice 0.91");
  h.at(90_500);
  h.progress.done({ best: 0.912345, epochs: 2 });
  assertEquals(h.out, [
    "before any bar\n",
    "\r[======>             ]  3/10\x1b[K",
    "\r\x1b[Kvalidation dice 0.91\n",
    "\r[======>             ]  3/10\x1b[K",
    "\r\x1b[Kdone in 1m31s  best 0.9123  epochs 2\n",
  ]);
});

Deno.test("progress on a TTY: the line is cut to the terminal width", () => {
  const h = harness({ isTTY: true, columns: 30 });
  h.progress.update({ epoch: 1, epochs: 100, step: 5, total: 250, loss: 0.5, lr: 1e-3 });
  assertEquals(h.out[0], `\repoch 1/100  [>${" ".repeat(14)}\x1b[K`);
  assertEquals(h.out[0].length - "\r\x1b[K".length, 29);
});

Deno.test("progress elsewhere: plain lines every 10 s, no control characters", () => {
  const h = harness({ isTTY: false });
  h.progress.update({ phase: "train", epoch: 1, epochs: 1, step: 0, total: 1000, loss: NaN });
  for (let i = 1; i <= 25; i++) {
    h.at(i * 1000);
    h.progress.update({ step: i * 10 });
  }
  h.progress.log("note");
  h.progress.done({ status: "stopped" });
  assertEquals(h.out, [
    "train  epoch 1/1  step 0/1000  loss NaN\n",
    "train  epoch 1/1  step 100/1000  loss NaN  10.0 patches/s  ETA 1m30s\n",
    "train  epoch 1/1  step 200/1000  loss NaN  10.0 patches/s  ETA 1m20s\n",
    "note\n",
    "done in 25s  status stopped\n",
  ]);
});

Deno.test("progress --json: one object per line, non-finite numbers as null", () => {
  const h = harness({ json: true, isTTY: true });
  h.progress.update({ epoch: 1, epochs: 2, step: 0, total: 10, loss: NaN, lr: 0.001 });
  h.at(500);
  h.progress.update({ step: 5 }); // under 1 s: skipped
  h.at(2000);
  h.progress.update({ step: 8 });
  h.progress.log("saved runs/a/best.safetensors");
  h.progress.done({ bestDice: 0.9 });
  const events = h.out.map((line) => {
    assertEquals(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), true);
    return JSON.parse(line);
  });
  assertEquals(events, [
    { event: "progress", epoch: 1, epochs: 2, step: 0, total: 10, loss: null, lr: 0.001 },
    {
      event: "progress",
      epoch: 1,
      epochs: 2,
      step: 8,
      total: 10,
      loss: null,
      lr: 0.001,
      patchesPerSec: 4,
      etaSec: 3,
    },
    { event: "log", message: "saved runs/a/best.safetensors" },
    { event: "done", elapsedSec: 2, bestDice: 0.9 },
  ]);
});

Deno.test("progress: caller-measured rate and ETA win over derived ones", () => {
  const h = harness({ isTTY: false, intervalMs: 0 });
  h.progress.update({ step: 0, total: 10 });
  h.at(1000);
  h.progress.update({ step: 1, patchesPerSec: 7.25, etaSec: 3600 });
  assertEquals(h.out[1], "step 1/10  7.3 patches/s  ETA 1h00m\n");
});
