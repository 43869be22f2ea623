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

/**
 * The first `bytes` bytes of an open file (fewer when it is shorter), read from its current
 * position: enough to tell a format by its header without reading the file.
 */
export async function readHead(file: Deno.FsFile, bytes: number): Promise<Uint8Array> {
  const head = new Uint8Array(bytes);
  let n = 0;
  while (n < head.length) {
    const read = await file.read(head.subarray(n));
    if (read === null) break;
    n += read;
  }
  return head.subarray(0, n);
}
