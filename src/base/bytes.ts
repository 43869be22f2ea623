/** Byte buffers: joining the chunks a stream or an encoder produced into one. */

/**
 * The chunks one after another in a new buffer (of `total` bytes when the caller counted them
 * already).
 */
export function concatBytes(
  chunks: readonly Uint8Array[],
  total = chunks.reduce((n, c) => n + c.length, 0),
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
