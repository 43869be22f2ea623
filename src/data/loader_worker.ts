/**
 * A loader worker: receives one `init` message (case locations, patch size, normalisation of
 * each channel, augmentation, cache budget), then fills the buffers each `batch` message lends
 * it ([B, C, D, H, W] images, [B, D, H, W] labels) and posts them back, transferred. Errors
 * are posted as messages naming the batch, so the loader can reject the right `next()` with
 * the worker's message.
 */

/// <reference lib="deno.worker" />

import { BatchReader, type WorkerReply, type WorkerRequest } from "./loader.ts";

let reader: BatchReader | undefined;
/** Batches are read one after another, in the order they came (the loader lends a worker up
 * to two at once, so the next is waiting when one is posted back). */
let queue = Promise.resolve();

self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  const message = e.data;
  if (message.type === "init") {
    // A worker's thread only reads batches: synchronous file reads cost it less.
    reader = new BatchReader(message, { syncReads: true });
    return;
  }
  queue = queue.then(() => readBatch(message));
};

async function readBatch(message: Extract<WorkerRequest, { type: "batch" }>): Promise<void> {
  try {
    if (!reader) throw new Error("loader worker got a batch before its init message");
    const reply = await reader.read(message.index, message.requests, message);
    // The loader lent these buffers (plain ArrayBuffers): move them back, do not copy.
    const buffers = [reply.image.buffer, reply.label.buffer, reply.labelU32.buffer];
    self.postMessage(reply, buffers);
  } catch (err) {
    const reply: WorkerReply = {
      type: "error",
      index: message.index,
      message: (err as Error)?.message ?? String(err),
    };
    self.postMessage(reply);
  }
}
