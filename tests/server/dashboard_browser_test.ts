/// <reference lib="dom" />
/**
 * The dashboard in a real browser: Debian's chromium (headless, WebGL through SwiftShader)
 * driven by playwright-core against a real server on a loopback port. A training job's curves
 * and a prediction's slices are checked by what is on screen — screenshots decoded to pixels:
 * the loss line's colour in the chart, class colours and grey CT in the slice view, a slider
 * that changes what the axial view shows — and the page must log no error, CSP ones included.
 *
 * Skipped (ignore) when chromium is missing: `apt-get install chromium` (.ci/run does). Set
 * CHROMIUM_PATH to use another binary, DASHBOARD_SHOTS=DIR to keep the screenshots.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { decodeNifti, writeNifti } from "../../src/data/nifti.ts";
import type { Volume } from "../../src/data/volume.ts";
import type { Job, JobPlan } from "../../src/server/jobs/job.ts";
import { classRgb } from "../../src/server/dashboard/palette.ts";
import {
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  niftiBytes,
  testOpts,
  TINY_TRAIN,
} from "./server_fixture.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const SHOTS = Deno.env.get("DASHBOARD_SHOTS");
const TOKEN = "dash-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };
/** The loss line's colour (palette.ts LOSS_CSS). */
const LOSS_RGB: [number, number, number] = [20, 90, 200];

function chromiumInstalled(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}
const haveChromium = chromiumInstalled();
if (!haveChromium) {
  console.warn(
    `dashboard browser test skipped: no chromium at ${CHROMIUM} ` +
      `(apt-get install -y --no-install-recommends chromium, or set CHROMIUM_PATH)`,
  );
}

/** Pixel facts of a screenshot, counted in the browser (which decodes the PNG). */
interface PixelStats {
  total: number;
  /** Per target colour: pixels within the tolerance of it. */
  near: number[];
  /** r ≈ g ≈ b, neither black nor white: grey CT (or grey chart ink). */
  grey: number;
  /** Pixels where one channel leads both others by 50 or more: red-, green-, blue-ish. */
  reddish: number;
  greenish: number;
}

async function pixelStats(
  decoder: Page,
  png: Uint8Array,
  targets: [number, number, number][] = [],
  tolerance = 40,
): Promise<PixelStats> {
  const b64 = btoa(Array.from(png, (b) => String.fromCharCode(b)).join(""));
  return await decoder.evaluate(async ({ b64, targets, tolerance }) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d")!;
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, img.width, img.height).data;
    const stats = {
      total: px.length / 4,
      near: targets.map(() => 0),
      grey: 0,
      reddish: 0,
      greenish: 0,
    };
    for (let i = 0; i < px.length; i += 4) {
      const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
      targets.forEach(([tr, tg, tb], k) => {
        if (Math.hypot(r - tr, g - tg, b - tb) <= tolerance) stats.near[k]++;
      });
      if (Math.abs(r - g) <= 6 && Math.abs(g - b) <= 6 && r >= 30 && r <= 235) stats.grey++;
      if (r >= g + 50 && r >= b + 50) stats.reddish++;
      if (g >= r + 50 && g >= b + 50) stats.greenish++;
    }
    return stats;
  }, { b64, targets, tolerance });
}

async function shot(page: Page, selector: string, name: string): Promise<Uint8Array> {
  // Two animation frames: uPlot and Niivue draw on the next frame after a change.
  await page.evaluate(() =>
    new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))
  );
  const png = await page.locator(selector).screenshot();
  if (SHOTS) {
    await Deno.mkdir(SHOTS, { recursive: true });
    await Deno.writeFile(join(SHOTS, `${name}.png`), png);
  }
  return png;
}

/** A CT phantom whose first slices are air, so the axial view changes along z. */
function phantom(): Volume {
  const volume = ctVolume([12, 32, 32]);
  const plane = 32 * 32;
  (volume.data as Int16Array).fill(-1000, 0, 3 * plane);
  return volume;
}

Deno.test({
  name: "dashboard in chromium: training charts, prediction overlay, upload, slice scrolling",
  ignore: !haveChromium,
  ...testOpts,
  fn: async () => {
    const { root } = await dataRoot();
    const server = await newServer({ token: TOKEN });
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, server.app.fetch);
    const base = `http://127.0.0.1:${http.addr.port}`;
    let browser: Browser | undefined;
    let page: Page | undefined;
    try {
      // The browser first: the jobs below keep the CPU busy.
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // SwiftShader gives WebGL2 without a GPU; no sandbox when tests run as root.
        args: ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"],
      });

      // A training job and a prediction job. The run shares this process's event loop, so
      // the page mostly gets the training events replayed from the job's log when it opens
      // the stream (the same code path as live ones; e2e_test.ts checks that they are live).
      const submit = async (path: string, body: unknown) =>
        (await (await server.app.request(path, jsonPost(body, AUTH))).json()) as Job;
      const trained = await submit("/v1/jobs/train", {
        dataset: "synth",
        name: "dash",
        config: { ...TINY_TRAIN, epochs: 2, itersPerEpoch: 2 },
      });
      const volume = phantom();
      await writeNifti(join(root, "dash_ct.nii.gz"), volume);
      const predicted = await submit("/v1/jobs/predict", {
        model: "tiny",
        input: "dash_ct.nii.gz",
        output: "dash_seg.nii.gz",
      });

      const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
      // Generous: the whole suite runs in parallel on two cores in CI.
      context.setDefaultTimeout(60_000);
      page = await context.newPage();
      const problems: string[] = [];
      // Until the token is in, the page's reads are refused (401) as they should be; the
      // browser logs each as a failed resource load.
      let tokenIn = false;
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() !== "error") return;
        if (!tokenIn && /status of 401/.test(m.text())) return;
        problems.push(`console: ${m.text()}`);
      });
      const decoder = await context.newPage();

      await page.goto(`${base}/`);
      await page.waitForSelector("html[data-ready]");
      // Without the token the page lists nothing and says what to do.
      await page.waitForFunction(() =>
        /enter it under Token/.test(document.getElementById("status")?.textContent ?? "")
      );
      assert.equal(await page.locator("#jobs button[data-job]").count(), 0);
      await page.fill("#token", TOKEN);
      await page.click("#token-form button[type=submit]");
      assert.equal(await page.evaluate(() => sessionStorage.getItem("voxseg.token")), TOKEN);
      await page.waitForSelector(`#jobs button[data-job="${trained.id}"]`);
      await page.waitForSelector('#models a[href="/v1/models/tiny"]');
      tokenIn = true;

      // Training curves: the job's event stream drawn into two uPlot charts.
      await page.click(`#jobs button[data-job="${trained.id}"]`);
      await page.waitForFunction(
        () => document.getElementById("job-summary")?.textContent?.startsWith("succeeded"),
        undefined,
        { timeout: 120_000 },
      );
      await page.waitForSelector("#chart-loss canvas");
      await page.waitForSelector("#chart-dice canvas");
      const lossStats = await pixelStats(
        decoder,
        await shot(page, "#chart-loss canvas", "chart_loss"),
        [LOSS_RGB],
      );
      assert.ok(lossStats.near[0] > 100, `loss line pixels: ${JSON.stringify(lossStats)}`);
      const diceLegend = await page.locator("#chart-dice .u-legend .u-label").allTextContents();
      assert.ok(diceLegend.includes("lung") && diceLegend.includes("infection"), `${diceLegend}`);
      const metrics =
        (await (await server.app.request(`/v1/jobs/${trained.id}`, { headers: AUTH })).json())
          .metrics;
      const diceStats = await pixelStats(
        decoder,
        await shot(page, "#chart-dice canvas", "chart_dice"),
        [classRgb(1) as [number, number, number]],
      );
      if (typeof metrics["dice/lung"] === "number") {
        assert.ok(diceStats.near[0] > 20, `lung Dice line pixels: ${JSON.stringify(diceStats)}`);
      }

      // A finished prediction job: its CT in grey with the label map over it in colour.
      await page.click(`#jobs button[data-job="${predicted.id}"]`);
      await page.waitForSelector('#viewer[data-state="ready"]');
      // The overlay check needs labels to draw: the tiny model's are not all background.
      const seg = await decodeNifti(await Deno.readFile(join(root, "dash_seg.nii.gz")));
      const labelled = (seg.data as Uint8Array).reduce((n, v) => n + (v > 0 ? 1 : 0), 0);
      assert.ok(labelled > 50, `the tiny model labelled only ${labelled} voxels`);
      const jobView = await pixelStats(decoder, await shot(page, "#viewer-canvas", "job_slices"));
      assert.ok(jobView.grey > 500, `grey CT pixels: ${JSON.stringify(jobView)}`);
      assert.ok(
        jobView.reddish + jobView.greenish > 200,
        `overlay pixels: ${JSON.stringify(jobView)}`,
      );

      // Upload: the page segments the file with the chosen model and shows it over the file.
      await page.setInputFiles("#segment-file", {
        name: "upload.nii.gz",
        mimeType: "application/gzip",
        buffer: Buffer.from(await niftiBytes(volume, true)),
      });
      await page.selectOption("#segment-model", "tiny");
      await page.click("#segment-run");
      await page.waitForFunction(() =>
        /upload\.nii\.gz segmented by tiny/.test(
          document.getElementById("viewer-caption")?.textContent ?? "",
        )
      );
      await page.waitForSelector('#viewer[data-state="ready"]');
      const middle = await pixelStats(decoder, await shot(page, "#viewer-canvas", "upload_mid"));
      assert.ok(middle.grey > 500, `grey CT pixels: ${JSON.stringify(middle)}`);
      assert.ok(middle.reddish + middle.greenish > 200, `overlay: ${JSON.stringify(middle)}`);
      const legend = await page.locator("#legend li").allTextContents();
      assert.deepEqual(legend, ["lung", "infection"]);

      // Scrolling: the axial slider to slice 0 (air) empties the axial view of tissue.
      await page.locator("#slice-z").fill("0");
      const top = await pixelStats(decoder, await shot(page, "#viewer-canvas", "upload_z0"));
      assert.ok(
        top.grey < middle.grey * 0.8,
        `axial slice 0 should show less tissue: mid ${middle.grey}, z=0 ${top.grey}`,
      );

      assert.deepEqual(problems, []);
    } finally {
      if (SHOTS) await page?.screenshot({ path: join(SHOTS, "page.png"), fullPage: true });
      await browser?.close();
      await http.shutdown();
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "dashboard in chromium: a planned training job's plan, live and as text; none for others",
  ignore: !haveChromium,
  ...testOpts,
  fn: async () => {
    // Job records written straight into the store (nothing runs: no GPU work).
    const server = await newServer();
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, server.app.fetch);
    const base = `http://127.0.0.1:${http.addr.port}`;
    const { store } = server.context;
    const record = (id: string, fields: Partial<Job>): Job => ({
      id,
      kind: "train",
      name: id,
      state: "running",
      createdAt: new Date().toISOString(),
      request: { dataset: "synth" },
      attempts: 1,
      ...fields,
    });
    const plan: JobPlan = {
      source: "request",
      path: "<img src=x onerror=alert(1)>/plans.json",
      network: "plain",
      targetSpacingMm: [3, 2, 2],
      normalisation: { scheme: "ct-window", window: [-160, 240] },
      patchSize: [48, 112, 112],
      batchSize: 2,
      baseChannels: 32,
      depth: 5,
      epochs: 4,
      itersPerEpoch: 25,
      budget: {
        budgetSeconds: 900,
        msPerStep: 5000,
        steps: 100,
        estimatedSeconds: 610,
        reason: "880 s left: plain, 5 stages, base 32 → 4 epochs × 25 steps ≈ 610 s",
      },
      reasons: {
        normalisation: "channel 0 (CT): CT: clip HU to -160..240 and scale to 0..1; " +
          "channel 1 (<b>PET</b>): each case z-scored with its own mean and std",
        channels: "2 input channels, each normalised by its own scheme",
        topology: "5 levels for patch 48×112×112; pools per axis (z,y,x) 4,4,4",
      },
      notes: [],
      fold: 1,
    };
    await store.create(record("jplanning", {}));
    await store.create(record("jplanned", { state: "succeeded", plan }));
    await store.create(
      record("jnone", { state: "failed", plan: { source: "none", reason: "plan none" } }),
    );
    await store.create(record("jpredict", {
      kind: "predict",
      state: "failed",
      request: { model: "tiny", input: "nowhere.nii.gz", output: "x.nii.gz" },
    }));
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"],
      });
      const page = await browser.newPage();
      page.setDefaultTimeout(60_000);
      const problems: string[] = [];
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("dialog", (d) => {
        problems.push(`dialog: ${d.message()}`);
        d.dismiss();
      });
      await page.goto(`${base}/`);
      await page.waitForSelector('#jobs button[data-job="jplanned"]');
      const rows = () =>
        page.evaluate(() =>
          Array.from(
            document.querySelectorAll("#job-plan dt"),
            (
              dt,
            ): [string, string] => [dt.textContent ?? "", dt.nextElementSibling?.textContent ?? ""],
          )
        );
      const planShown = () => page.locator("#job-plan").isVisible();

      // A job whose planning ends while it is followed: the plan appears with the "planned" log.
      await page.click('#jobs button[data-job="jplanning"]');
      await page.waitForFunction(() => document.getElementById("job-summary")?.textContent);
      assert.equal(await planShown(), false);
      store.append("jplanning", "log", { message: "planned", plan });
      await page.waitForSelector("#job-plan:not([hidden])");
      assert.equal(await page.textContent("#job-log"), "planned");

      // A finished planned job: its rows, user-supplied text as text (no element made of it).
      await page.click('#jobs button[data-job="jplanned"]');
      await page.waitForFunction(() =>
        document.getElementById("job-title")?.textContent?.includes("jplanned")
      );
      const shown = new Map(await rows());
      assert.equal(
        shown.get("plan"),
        "<img src=x onerror=alert(1)>/plans.jsonnamed by the request",
      );
      assert.equal(shown.get("network")?.startsWith("plain"), true);
      assert.equal(shown.get("patch (z, y, x)"), "48×112×112");
      assert.match(shown.get("channel 1 normalisation") ?? "", /^<b>PET<\/b>each case z-scored/);
      assert.match(shown.get("schedule") ?? "", /^4 epochs × 25 steps per epoch = 100 steps/);
      assert.match(shown.get("time budget") ?? "", /^15 min: 100 steps at 5000 ms\/step/);
      assert.equal(shown.get("cross-validation fold"), "1");
      assert.equal(await page.locator("#job-plan img, #job-plan b").count(), 0);
      assert.equal(await page.locator("#job-plan dd .why").first().isVisible(), true);
      if (SHOTS) await shot(page, "#job-section", "job_plan");

      // A job trained without a plan, and a prediction: no plan shown.
      for (const id of ["jnone", "jpredict"]) {
        await page.click(`#jobs button[data-job="${id}"]`);
        await page.waitForFunction(
          (id) => document.getElementById("job-title")?.textContent?.includes(id),
          id,
        );
        assert.equal(await planShown(), false, id);
        assert.deepEqual(await rows(), [], id);
      }
      assert.deepEqual(problems, []);
    } finally {
      await browser?.close();
      await http.shutdown();
      await server.shutdown();
    }
  },
});
