/**
 * Prometheus metrics in the text exposition format (version 0.0.4): HTTP requests by route and
 * status, request latency as a histogram, and gauges read at scrape time (GPU queue depth, GPU
 * busy seconds, jobs by state, training loss of running jobs).
 */

/** Latency histogram bucket bounds in seconds: health checks to whole-volume predictions. */
export const LATENCY_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
] as const;

/** The HTTP methods counted by name; any other is counted as `other`. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
]);

/**
 * A request method as a label: the known ones by name, anything else `other`, so a client
 * inventing methods cannot grow the label set.
 */
export function metricMethod(method: string): string {
  return KNOWN_METHODS.has(method) ? method : "other";
}

/** Values read from the rest of the server when /metrics is scraped. */
export interface MetricsSnapshot {
  /** GPU tasks waiting for their turn (synchronous predictions). */
  gpuQueueDepth: number;
  /** Seconds the GPU lane has been held, since start. */
  gpuBusySeconds: number;
  /** Jobs by state. */
  jobs: Record<string, number>;
  /** Latest loss and step of each running training job, by job id. */
  training: Record<string, { loss: number; step: number }>;
}

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

const escapeLabel = (v: string) =>
  v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

const labels = (pairs: Record<string, string>) =>
  "{" + Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",") + "}";

const num = (v: number) =>
  Number.isNaN(v) ? "NaN" : v === Infinity ? "+Inf" : v === -Infinity ? "-Inf" : String(v);

/** Counters and histograms owned by the HTTP layer, plus the scrape-time snapshot. */
export class Metrics {
  readonly #requests = new Map<string, { labels: Record<string, string>; count: number }>();
  readonly #latency = new Map<string, Histogram>();
  readonly #snapshot: () => MetricsSnapshot;

  constructor(snapshot: () => MetricsSnapshot) {
    this.#snapshot = snapshot;
  }

  /**
   * Counts one finished request; `route` is the route pattern, not the raw path. Methods
   * outside {@link KNOWN_METHODS} count as `other`.
   */
  observeRequest(httpMethod: string, route: string, status: number, seconds: number): void {
    const method = metricMethod(httpMethod);
    const key = `${method} ${route} ${status}`;
    const entry = this.#requests.get(key) ??
      { labels: { method, route, status: String(status) }, count: 0 };
    entry.count++;
    this.#requests.set(key, entry);
    let h = this.#latency.get(route);
    if (!h) {
      h = { counts: new Array(LATENCY_BUCKETS.length).fill(0), sum: 0, count: 0 };
      this.#latency.set(route, h);
    }
    LATENCY_BUCKETS.forEach((le, i) => {
      if (seconds <= le) h.counts[i]++;
    });
    h.sum += seconds;
    h.count++;
  }

  /** The exposition text. */
  render(): string {
    const s = this.#snapshot();
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);

    family("voxseg_http_requests_total", "counter", "HTTP requests by method, route and status.");
    for (const { labels: l, count } of this.#requests.values()) {
      out.push(`voxseg_http_requests_total${labels(l)} ${count}`);
    }
    family(
      "voxseg_http_request_duration_seconds",
      "histogram",
      "HTTP request latency by route, until the response headers.",
    );
    for (const [route, h] of this.#latency) {
      LATENCY_BUCKETS.forEach((le, i) =>
        out.push(
          `voxseg_http_request_duration_seconds_bucket${labels({ route, le: String(le) })} ${
            h.counts[i]
          }`,
        )
      );
      out.push(
        `voxseg_http_request_duration_seconds_bucket${labels({ route, le: "+Inf" })} ${h.count}`,
        `voxseg_http_request_duration_seconds_sum${labels({ route })} ${num(h.sum)}`,
        `voxseg_http_request_duration_seconds_count${labels({ route })} ${h.count}`,
      );
    }
    family("voxseg_gpu_queue_depth", "gauge", "GPU tasks waiting for their turn.");
    out.push(`voxseg_gpu_queue_depth ${s.gpuQueueDepth}`);
    family("voxseg_gpu_busy_seconds_total", "counter", "Seconds the GPU was held by work.");
    out.push(`voxseg_gpu_busy_seconds_total ${num(s.gpuBusySeconds)}`);
    family("voxseg_jobs", "gauge", "Jobs by state.");
    for (const [state, n] of Object.entries(s.jobs)) {
      out.push(`voxseg_jobs${labels({ state })} ${n}`);
    }
    family("voxseg_training_loss", "gauge", "Latest training loss of each running training job.");
    for (const [job, t] of Object.entries(s.training)) {
      out.push(`voxseg_training_loss${labels({ job })} ${num(t.loss)}`);
    }
    family("voxseg_training_step", "gauge", "Optimizer steps taken by each running training job.");
    for (const [job, t] of Object.entries(s.training)) {
      out.push(`voxseg_training_step${labels({ job })} ${t.step}`);
    }
    return out.join("\n") + "\n";
  }
}
