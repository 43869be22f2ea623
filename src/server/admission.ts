/**
 * Memory admission for request bodies (`voxseg serve --memory-budget`): the host bytes that
 * synchronous predictions hold at once — admitted and reading, queued for the GPU, running — are
 * capped by one budget. A request takes its share before its body is read and gives it back
 * however it ends; what does not fit now is refused with 503 + Retry-After, what could never fit
 * with 413. Nothing is queued on the budget itself: a client retries, as with a full GPU queue.
 */

import { ApiError } from "./errors.ts";
import { formatBytes } from "./middleware/body_limit/body_limit.ts";

/** Default `--memory-budget`: 2 GiB. */
export const DEFAULT_MEMORY_BUDGET = 2 * 1024 ** 3;

/** How a refusal is worded and when the client should retry. */
export interface AdmissionContext {
  /** What needs the memory, for the message: "the request body", "a 512×512×300 int16 volume". */
  what: string;
  /** Retry-After of a 503. */
  retryAfterSeconds: number;
}

/** A share of the budget; {@link release} it however the request ends (idempotent). */
export interface Reservation {
  /** Bytes held now. */
  readonly bytes: number;
  /**
   * Changes the share to `bytes`: a decrease always succeeds; an increase throws 413 when it
   * exceeds the whole budget and 503 when the budget is taken by others now (the share is then
   * left as it was).
   */
  resize(bytes: number, context: AdmissionContext): void;
  release(): void;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/**
 * The budget and its reservations.
 *
 * @example
 * const budget = new MemoryBudget(2 * 1024 ** 3);
 * const share = budget.reserve(contentLength, { what: "the request body", retryAfterSeconds: 2 });
 * try { … share.resize(decodedBytes, ctx); … } finally { share.release(); }
 */
export class MemoryBudget {
  readonly totalBytes: number;
  #reserved = 0;
  #holders = 0;

  constructor(totalBytes: number) {
    if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) {
      throw new RangeError(
        `the memory budget must be a positive number of bytes, got ${totalBytes}`,
      );
    }
    this.totalBytes = totalBytes;
  }

  /** Bytes reserved now. */
  get reservedBytes(): number {
    return this.#reserved;
  }

  /** Reservations not yet released. */
  get holders(): number {
    return this.#holders;
  }

  /** A share of `bytes`; 413 or 503 ({@link Reservation.resize}) when it does not fit. */
  reserve(bytes: number, context: AdmissionContext): Reservation {
    this.#check(bytes, 0, context);
    this.#reserved += bytes;
    this.#holders++;
    let held = bytes;
    let released = false;
    return {
      get bytes() {
        return held;
      },
      resize: (next: number, ctx: AdmissionContext) => {
        if (released) throw new Error("resize of a released memory reservation");
        if (next > held) this.#check(next, held, ctx);
        this.#reserved += next - held;
        held = next;
      },
      release: () => {
        if (released) return;
        released = true;
        this.#reserved -= held;
        this.#holders--;
        held = 0;
      },
    };
  }

  /** Throws unless `bytes` fit, counting `own` bytes the caller already holds as free. */
  #check(bytes: number, own: number, { what, retryAfterSeconds }: AdmissionContext): void {
    if (!Number.isFinite(bytes) || bytes < 0) {
      throw new RangeError(`a memory reservation must be ≥ 0 bytes, got ${bytes}`);
    }
    if (bytes > this.totalBytes) {
      throw new ApiError(
        413,
        "payload_too_large",
        `${what} needs ${mib(bytes)} of memory while it is decoded and predicted, more than ` +
          `the server's whole memory budget of ${formatBytes(this.totalBytes)} (voxseg serve ` +
          "--memory-budget); send a smaller volume or raise the budget",
      );
    }
    if (this.#reserved - own + bytes > this.totalBytes) {
      throw new ApiError(
        503,
        "memory_busy",
        `${what} needs ${mib(bytes)} of memory, but ${mib(this.#reserved - own)} of the ` +
          `${formatBytes(this.totalBytes)} memory budget is held by requests in progress; ` +
          `retry in ${retryAfterSeconds} s`,
        { "retry-after": String(retryAfterSeconds) },
      );
    }
  }
}
