/// <reference lib="dom" />
/**
 * The dashboard page (served at `/`, bundled into dist/app.js by build.ts): the models and
 * jobs (polled), a selected job's events followed live (training curves; a planned training
 * job's plan; a prediction job's label map shown over its CT when it finishes), and a form that
 * segments a NIfTI file (or a zip of a DICOM series) the user picks and shows the result over
 * it. Everything from the server goes into the page as text, never as HTML.
 */

import type { Job, JobPlan, JobState, PredictJobRequest } from "../jobs/job.ts";
import type { ModelSummary } from "../models.ts";
import {
  ApiCallError,
  authHeaders,
  call,
  getBytes,
  getJob,
  getToken,
  isGzip,
  isZip,
  listJobs,
  listModels,
  predict,
  setToken,
} from "./api.ts";
import { TrainingCharts } from "./charts.ts";
import { byId, h } from "./dom.ts";
import { followEvents, type StreamEvent } from "./event_stream.ts";
import { planRows } from "./plan_rows.ts";
import { SliceViewer } from "./slice_viewer.ts";

const POLL_MS = 4000;
const FINAL_STATES: readonly JobState[] = ["succeeded", "failed", "cancelled", "interrupted"];

const status = byId<HTMLParagraphElement>("status");
const charts = new TrainingCharts(byId("chart-loss"), byId("chart-dice"));
const viewer = new SliceViewer({
  canvas: byId("viewer-canvas"),
  sliders: [byId("slice-x"), byId("slice-y"), byId("slice-z")],
  legend: byId("legend"),
  root: byId("viewer"),
});

let models: ModelSummary[] = [];
let selectedJob: string | undefined;
let following: AbortController | undefined;

/** Shows a message above the page (an error in red); "" clears it. */
function say(message: string, isError = false): void {
  status.textContent = message;
  status.classList.toggle("error", isError);
}

/** The message for a failed call; 401s say what to do. */
function describe(e: unknown): string {
  if (e instanceof ApiCallError && e.status === 401) {
    return `${e.message} — this server needs its bearer token: enter it under Token.`;
  }
  return e instanceof Error ? e.message : String(e);
}

// ---- models and jobs -------------------------------------------------------------------

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

/** Rows last rendered per table: unchanged data leaves the DOM alone (no flicker, no lost clicks). */
const rendered = { models: "", jobs: "" };

function renderModels(): void {
  const key = JSON.stringify(models);
  if (key === rendered.models) return;
  rendered.models = key;
  byId("models").querySelector("tbody")!.replaceChildren(
    ...models.map((m) =>
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: `/v1/models/${encodeURIComponent(m.name)}` }, m.name)),
        h("td", {}, m.source === "job" && m.jobId ? `job ${m.jobId}` : m.source),
        h("td", {}, (m.classes ?? []).join(", ")),
        h("td", {}, formatBytes(m.sizeBytes)),
        h("td", { class: m.error ? "state-failed" : "" }, m.error ?? ""),
      )
    ),
  );
  const select = byId<HTMLSelectElement>("segment-model");
  const previous = select.value;
  const usable = models.filter((m) => !m.error);
  select.replaceChildren(...usable.map((m) => h("option", { value: m.name }, m.name)));
  if (usable.some((m) => m.name === previous)) select.value = previous;
}

function progressText(job: Job): string {
  const fraction = job.progress?.fraction;
  return typeof fraction === "number" ? `${Math.round(fraction * 100)} %` : "";
}

function renderJobs(jobs: Job[]): void {
  const key = JSON.stringify(jobs.map((j) => [j.id, j.name, j.state, j.progress]));
  if (key === rendered.jobs) return;
  rendered.jobs = key;
  byId("jobs").querySelector("tbody")!.replaceChildren(
    ...jobs.map((j) => {
      const loss = j.progress?.loss;
      return h(
        "tr",
        { class: j.id === selectedJob ? "selected" : undefined, "data-job": j.id },
        h("td", {}, h("button", { type: "button", class: "link", "data-job": j.id }, j.id)),
        h("td", {}, j.kind),
        h("td", {}, j.name),
        h("td", { class: `state-${j.state}` }, j.state),
        h("td", {}, progressText(j)),
        h("td", {}, typeof loss === "number" ? loss.toFixed(4) : ""),
        h("td", {}, new Date(j.createdAt).toLocaleString()),
      );
    }),
  );
}

async function refresh(): Promise<void> {
  try {
    const [jobs, list] = await Promise.all([listJobs(), listModels()]);
    models = list;
    renderModels();
    renderJobs(jobs);
    if (status.classList.contains("error")) say("");
  } catch (e) {
    say(describe(e), true);
  }
}

let version = "";

/** The header's line: version, GPU, queue (polled with the lists). */
async function showDevice(): Promise<void> {
  if (!version) {
    try {
      const doc = await (await call("/openapi.json")).json();
      if (typeof doc?.info?.version === "string") version = `v${doc.info.version}`;
    } catch {
      // the version is a nicety
    }
  }
  const parts = version ? [version] : [];
  try {
    const body = await (await call("/v1/device")).json();
    if (typeof body?.adapter?.description === "string") {
      parts.push(`GPU: ${body.adapter.description}`);
    }
    const queue = body?.scheduler;
    if (typeof queue?.queueDepth === "number") {
      parts.push(`queue ${queue.queueDepth}/${queue.maxQueue}`);
    }
  } catch (e) {
    if (e instanceof ApiCallError && e.status === 503) parts.push(`GPU: ${e.message}`);
  }
  byId("device").textContent = parts.join(" · ");
}

// ---- one job ---------------------------------------------------------------------------

function parseData(e: StreamEvent): Record<string, unknown> {
  try {
    const data = JSON.parse(e.data);
    return typeof data === "object" && data !== null ? data : {};
  } catch {
    return {};
  }
}

const num = (v: unknown, digits: number) =>
  typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–";

/** A planned training job's plan as a list of choices and reasons; hidden for any other job. */
function showPlan(job: Pick<Job, "kind" | "plan">): void {
  const rows = planRows(job);
  const box = byId("job-plan");
  box.hidden = rows.length === 0;
  box.querySelector("dl")!.replaceChildren(
    ...rows.flatMap((r) => [
      h("dt", {}, r.label),
      h("dd", {}, r.value, r.why ? h("span", { class: "why" }, r.why) : null),
    ]),
  );
}

async function selectJob(id: string): Promise<void> {
  following?.abort();
  const controller = new AbortController();
  following = controller;
  selectedJob = id;
  location.hash = `job=${encodeURIComponent(id)}`;
  for (const row of byId("jobs").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", (row as HTMLElement).dataset.job === id);
  }
  charts.clear();
  const section = byId("job-section");
  const summary = byId("job-summary");
  const log = byId("job-log");
  section.hidden = false;
  summary.textContent = "";
  log.textContent = "";
  showPlan({ kind: "train" }); // none until the job is read
  let job: Job;
  try {
    job = await getJob(id);
  } catch (e) {
    if (!controller.signal.aborted) summary.textContent = describe(e);
    return;
  }
  if (controller.signal.aborted) return; // another job was picked meanwhile
  byId("job-title").textContent = `${
    job.kind === "train" ? "Training" : "Prediction"
  } job ${job.id} (${job.name})`;
  summary.dataset.state = job.state;
  summary.textContent = job.state;
  showPlan(job);
  await followEvents(`/v1/jobs/${encodeURIComponent(id)}/events`, {
    headers: authHeaders(), // the token as of now: a stream keeps it
    signal: controller.signal,
    isLast: (e) => e.event === "state" && FINAL_STATES.includes(parseData(e).state as JobState),
    onError: (err) => log.textContent = `event stream: ${err.message}`,
    onEvent: (e) => {
      const data = parseData(e);
      if (e.event === "progress" && data.phase === "train") {
        charts.addStep(Number(data.step), data.loss, data.lr);
        summary.textContent = `${summary.dataset.state}: epoch ${data.epoch}/${data.epochs}, ` +
          `step ${data.step}, loss ${num(data.loss, 4)}, lr ${num(data.lr, 6)}`;
      } else if (e.event === "progress" && data.phase === "predict") {
        summary.textContent = `${summary.dataset.state}: window ${data.done} of ${data.total}`;
      } else if (e.event === "metrics") {
        const metrics = data.metrics;
        if (typeof metrics === "object" && metrics !== null) {
          charts.addValidation(Number(data.step), metrics as Record<string, unknown>);
        }
      } else if (e.event === "state") {
        const state = String(data.state);
        summary.dataset.state = state;
        const error = data.error as { message?: unknown } | undefined;
        summary.textContent = state + (error?.message ? `: ${error.message}` : "");
        if (FINAL_STATES.includes(state as JobState)) refresh();
      } else if (e.event === "log" && typeof data.message === "string") {
        log.textContent = data.message;
        // Planning done while the job is followed: its plan, as GET /v1/jobs/{id} now has it.
        if (typeof data.plan === "object" && data.plan !== null && !controller.signal.aborted) {
          showPlan({ kind: job.kind, plan: data.plan as JobPlan });
        }
      } else if (e.event === "checkpoint" && typeof data.path === "string") {
        log.textContent = `checkpoint ${data.path}`;
      }
    },
  });
  if (controller.signal.aborted || job.kind !== "predict") return;
  // The stream ended: the job is final. A succeeded prediction has a label map to show.
  job = await getJob(id).catch(() => job);
  if (job.state === "succeeded") await showPredictJob(job);
}

async function showPredictJob(job: Job): Promise<void> {
  const caption = byId("viewer-caption");
  caption.textContent = `loading job ${job.id}…`;
  try {
    const base = `/dashboard/jobs/${encodeURIComponent(job.id)}`;
    const [image, labels] = await Promise.all([
      getBytes(`${base}/image`),
      getBytes(`${base}/labels`),
    ]);
    const summary = job.result?.summary as { classes?: { name: string }[] } | undefined;
    const names = (summary?.classes ?? []).map((c) => c.name);
    const request = job.request as PredictJobRequest;
    await viewer.show(
      { bytes: image, name: String(request.input) },
      { bytes: labels, name: String(job.result?.output ?? "labels") },
      names,
    );
    caption.textContent = `job ${job.id}: ${request.input} segmented by ${request.model}`;
  } catch (e) {
    caption.textContent = `could not show job ${job.id}: ${describe(e)}`;
  }
}

// ---- segment an uploaded volume --------------------------------------------------------

async function segmentUpload(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const model = byId<HTMLSelectElement>("segment-model").value;
  const file = byId<HTMLInputElement>("segment-file").files?.[0];
  const button = byId<HTMLButtonElement>("segment-run");
  const caption = byId("viewer-caption");
  if (!model || !file) {
    caption.textContent = model
      ? "pick a NIfTI file or a .zip of a DICOM series"
      : "no usable model to segment with";
    return;
  }
  button.disabled = true;
  caption.textContent = `segmenting ${file.name} with ${model}…`;
  try {
    const image = await file.arrayBuffer();
    const { labels, seconds } = await predict(model, image);
    const classes = models.find((m) => m.name === model)?.classes ?? [];
    const labelFile = { bytes: labels, name: isGzip(labels) ? "labels.nii.gz" : "labels.nii" };
    // The viewer reads NIfTI: a zipped DICOM series is shown by its label map alone.
    const dicom = isZip(image);
    await viewer.show(dicom ? labelFile : { bytes: image, name: file.name }, labelFile, classes);
    caption.textContent = `${file.name} segmented by ${model}` +
      (seconds === undefined ? "" : ` in ${seconds.toFixed(1)} s`) +
      (dicom ? " (the label map alone: the DICOM series is not shown)" : "");
  } catch (e) {
    caption.textContent = `could not segment ${file.name}: ${describe(e)}`;
  } finally {
    button.disabled = false;
  }
}

// ---- wiring ----------------------------------------------------------------------------

const tokenInput = byId<HTMLInputElement>("token");
tokenInput.value = getToken();
byId("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setToken(tokenInput.value.trim());
  refresh();
  showDevice();
});
byId("token-forget").addEventListener("click", () => {
  tokenInput.value = "";
  setToken("");
  refresh();
});
byId("jobs").addEventListener("click", (e) => {
  const id = (e.target as HTMLElement).closest("button[data-job]")?.getAttribute("data-job");
  if (id) selectJob(id);
});
byId("segment-form").addEventListener("submit", (e) => segmentUpload(e as SubmitEvent));

await Promise.all([refresh(), showDevice()]);
const fromHash = /^#job=(.+)$/.exec(location.hash)?.[1];
if (fromHash) selectJob(decodeURIComponent(fromHash));
let polling: Promise<unknown> | undefined;
setInterval(() => {
  // One poll at a time: a busy server must not get a pile of them.
  if (polling || document.visibilityState !== "visible") return;
  polling = Promise.all([refresh(), showDevice()]).finally(() => polling = undefined);
}, POLL_MS);
document.documentElement.dataset.ready = "true";
