import { join } from "node:path";
import { assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  METRICS_FILE,
  MetricsLog,
  readMetricsLog,
  SUMMARY_FILE,
  writeSummary,
} from "../../src/train/metrics_log.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxseg-metrics-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const clock = () => new Date(Date.UTC(2025, 0, 2, 3, 4, 5));

Deno.test("metrics log: one JSON line per record, on disk as soon as it is appended", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "run", METRICS_FILE);
    const log = MetricsLog.open(path, { now: clock });
    log.append({ event: "train", step: 10, loss: 0.5, lr: 1e-3 });
    // Read while still open: the line is already there.
    assertEquals(
      await Deno.readTextFile(path),
      '{"time":"2025-01-02T03:04:05.000Z","event":"train","step":10,"loss":0.5,"lr":0.001}\n',
    );
    log.append({ time: "given", event: "val", dice: [0.9, NaN], loss: Infinity });
    log.close();
    assertThrows(() => log.append({ x: 1 }), Error, "metrics log is closed");
    assertEquals(await readMetricsLog(path), [
      { time: "2025-01-02T03:04:05.000Z", event: "train", step: 10, loss: 0.5, lr: 0.001 },
      { time: "given", event: "val", dice: [0.9, null], loss: null },
    ]);
  });
});

Deno.test("metrics log: reopening appends; a half-written last line is cut off", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, METRICS_FILE);
    {
      using log = MetricsLog.open(path, { timestamp: false });
      log.append({ step: 1 });
    }
    await Deno.writeTextFile(path, '{"step":2,"lo', { append: true }); // a crash mid-line
    assertEquals(await readMetricsLog(path), [{ step: 1 }]); // readers skip it
    {
      using log = MetricsLog.open(path, { timestamp: false });
      log.append({ step: 2 });
    }
    assertEquals(await Deno.readTextFile(path), '{"step":1}\n{"step":2}\n');
  });
});

Deno.test("readMetricsLog: a corrupt complete line is an error naming the line", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, METRICS_FILE);
    await Deno.writeTextFile(path, '{"a":1}\n\n[1]\n{"b":2}\n');
    await assertRejects(() => readMetricsLog(path), Error, `${path}:3: not a JSON object: [1]`);
  });
});

Deno.test("summary.json: replaced atomically, pretty-printed, non-finite as null", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "out", SUMMARY_FILE);
    await writeSummary(path, { status: "running", epoch: 1 });
    await writeSummary(path, { status: "done", epoch: 2, bestDice: NaN });
    assertEquals(
      await Deno.readTextFile(path),
      '{\n  "status": "done",\n  "epoch": 2,\n  "bestDice": null\n}\n',
    );
    const names = (await Array.fromAsync(Deno.readDir(join(dir, "out")))).map((e) => e.name);
    assertEquals(names, [SUMMARY_FILE]); // no temporary files left behind
  });
});
