/**
 * Atomic writes: a reader sees either the old file (or folder) or the complete new one, never
 * a half-written one. Data goes to a temporary sibling, is fsynced, then renamed over the
 * target (rename is atomic within one file system, hence the same folder).
 */

import { basename, dirname, join } from "node:path";

/** A unique sibling name for `path`: same folder, hidden, tagged with the pid and a nonce. */
export function tempSibling(path: string, tag = "tmp"): string {
  const nonce = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return join(dirname(path), `.${basename(path)}.${tag}-${Deno.pid}-${nonce}`);
}

/**
 * Writes `data` to `path` atomically (temp file in the same folder, fsync, rename). The
 * folder is created if missing.
 *
 * @example
 * await writeFileAtomic("runs/a/dataset.json", JSON.stringify(manifest));
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string | ReadableStream<Uint8Array>,
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    try {
      if (data instanceof ReadableStream) {
        await data.pipeTo(file.writable, { preventClose: true });
      } else {
        const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
        let written = 0;
        while (written < bytes.length) written += await file.write(bytes.subarray(written));
      }
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncFolder(dirname(path));
}

/**
 * Writes `data` to a new file at `path`, atomically and never replacing a file: a temporary
 * sibling is written and fsynced, `beforeCommit` runs (a last check, may throw), then the file
 * is hard-linked into place — which fails with `Deno.errors.AlreadyExists` when `path` exists,
 * whoever created it meanwhile. Returns the new file's info.
 *
 * @example
 * await writeFileNew("out/case_seg.nii.gz", bytes); // AlreadyExists if it is there
 */
export async function writeFileNew(
  path: string,
  data: Uint8Array,
  { beforeCommit }: { beforeCommit?: () => Promise<void> } = {},
): Promise<Deno.FileInfo> {
  const tmp = tempSibling(path);
  let info: Deno.FileInfo;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    try {
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
      await file.sync();
      info = await file.stat();
    } finally {
      file.close();
    }
    await beforeCommit?.();
    await Deno.link(tmp, path);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  await syncFolder(dirname(path));
  return info;
}

/**
 * Moves a fully written folder `tmp` to `path`, replacing what was there. The swap of an
 * existing folder is two renames (old aside, new in), so a crash in between leaves the old
 * copy next to the target as `.NAME.old-…` rather than losing it.
 */
export async function commitFolder(tmp: string, path: string): Promise<void> {
  let old: string | undefined;
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    const exists = await Deno.stat(path).then(() => true, () => false);
    if (!exists) throw e;
    old = tempSibling(path, "old");
    await Deno.rename(path, old);
    await Deno.rename(tmp, path);
  }
  await syncFolder(dirname(path));
  if (old) await Deno.remove(old, { recursive: true });
}

/** fsyncs a folder so a rename inside it is durable; best effort where the OS refuses. */
export async function syncFolder(path: string): Promise<void> {
  try {
    const dir = await Deno.open(path, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch {
    // Some platforms cannot open or fsync a directory; the rename is still atomic.
  }
}
