/**
 * Server-sent events read with `fetch` rather than `EventSource`: `EventSource` cannot send an
 * `Authorization` header, which a server with a token requires on every data route.
 * {@link EventStreamParser} follows the WHATWG event-stream rules; {@link followEvents}
 * reconnects with `Last-Event-ID` the way `EventSource` does, until the server ends the stream
 * on purpose (a job reached a final state) or the caller aborts.
 */

/** One dispatched event. */
export interface StreamEvent {
  /** The `event:` field; "message" when absent. */
  event: string;
  /** The `data:` lines joined by "\n". */
  data: string;
  /** The last `id:` seen so far in the stream (ids persist across events, as in the spec). */
  lastEventId: string;
}

/** Incremental text/event-stream parser: feed it text as it arrives, get whole events back. */
export class EventStreamParser {
  #buffer = "";
  #started = false;
  #data: string[] = [];
  #event = "";
  /** The last event id received (sent back as Last-Event-ID on reconnect). */
  lastEventId = "";
  /** The server's `retry:` in milliseconds, once it has sent one. */
  retryMs: number | undefined;

  /** Parses `chunk` (any split of the stream); returns the events it completes. */
  push(chunk: string): StreamEvent[] {
    let text = this.#buffer + chunk;
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const events: StreamEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch !== "\n" && ch !== "\r") continue;
      // A CR as the chunk's last character may be the first half of a CRLF: wait for more.
      if (ch === "\r" && i === text.length - 1) break;
      const event = this.#line(text.slice(start, i));
      if (event) events.push(event);
      if (ch === "\r" && text[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.#buffer = text.slice(start);
    return events;
  }

  #line(line: string): StreamEvent | undefined {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }

  #dispatch(): StreamEvent | undefined {
    const data = this.#data;
    const event = this.#event || "message";
    this.#data = [];
    this.#event = "";
    if (data.length === 0) return undefined;
    return { event, data: data.join("\n"), lastEventId: this.lastEventId };
  }
}

export interface FollowOptions {
  /** Extra request headers (the bearer token). */
  headers?: Record<string, string>;
  /** Stops following; the promise then resolves. */
  signal: AbortSignal;
  onEvent: (event: StreamEvent) => void;
  /**
   * Whether the server ended the stream on purpose after this event (for job streams: a
   * `state` event with a final state). When false for the last event, the client reconnects.
   */
  isLast: (event: StreamEvent) => boolean;
  /** Called on each connection failure, with the error (a message for the page). */
  onError?: (error: Error) => void;
}

/**
 * Reads the stream at `url`, reconnecting with Last-Event-ID after breaks (waiting the
 * server's `retry:`, 3 s by default). Resolves when the stream ended on purpose or `signal`
 * aborted. HTTP errors (a 404 for a deleted job, a 401) end it too: retrying will not help.
 */
export async function followEvents(url: string, options: FollowOptions): Promise<void> {
  const { signal } = options;
  const parser = new EventStreamParser();
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers: Record<string, string> = { accept: "text/event-stream", ...options.headers };
      if (parser.lastEventId) headers["last-event-id"] = parser.lastEventId;
      const res = await fetch(url, { headers, signal, cache: "no-store" });
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        options.onError?.(new Error(`${url}: HTTP ${res.status}`));
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const event of parser.push(value)) {
          options.onEvent(event);
          if (options.isLast(event)) ended = true;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      options.onError?.(e as Error);
    }
    if (ended) return;
    await sleep(parser.retryMs ?? 3000, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
