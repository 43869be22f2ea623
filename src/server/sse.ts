/**
 * A job's events as a server-sent event stream: the events logged so far (after the client's
 * `Last-Event-ID`), then each new one as it happens; the stream ends after the event that
 * puts the job in a final state, or when the server shuts down. Comment lines keep idle
 * connections open through proxies.
 */

import { isFinal, type Job, type JobEvent, type JobState } from "./jobs/job.ts";
import type { JobStore } from "./jobs/store.ts";

export interface EventStreamOptions {
  /** Replay only events with a larger id (the client's Last-Event-ID). */
  after?: number;
  /** Milliseconds between keep-alive comments. Default 15 000. */
  heartbeatMs?: number;
  /** Ends the stream (server shutdown). */
  signal?: AbortSignal;
}

/** One event in the SSE wire format. */
export function formatEvent(e: JobEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

/** The stream for `job` (see the module comment). */
export async function jobEventStream(
  store: JobStore,
  job: Job,
  { after = 0, heartbeatMs = 15_000, signal }: EventStreamOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const past = await store.events(job.id);
  const encoder = new TextEncoder();
  let cleanup = () => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      let open = true;
      const send = (text: string) => {
        if (open) controller.enqueue(encoder.encode(text));
      };
      const finish = () => {
        if (!open) return;
        cleanup();
        open = false;
        controller.close();
      };
      send("retry: 3000\n\n");
      // Replay and subscribe in one synchronous run, so no event falls between them.
      for (const e of past) if (e.id > after) send(formatEvent(e));
      if (isFinal(job.state) || signal?.aborted) return finish();
      const unsubscribe = store.subscribe(job.id, (e) => {
        send(formatEvent(e));
        if (e.type === "state" && isFinal(e.data.state as JobState)) finish();
      });
      const timer = setInterval(() => send(": keep-alive\n\n"), heartbeatMs);
      signal?.addEventListener("abort", finish, { once: true });
      cleanup = () => {
        unsubscribe();
        clearInterval(timer);
        signal?.removeEventListener("abort", finish);
      };
    },
    cancel() {
      cleanup();
    },
  });
}
