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

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const message = e.data;
  if (message.type === "init") {
    reader = new BatchReader(message);
    return;
  }
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
};
