/** A disk for the job store that fills up on demand, for the fault tests. */

import { DENO_JOB_FILES, type JobFiles } from "../../src/server/jobs/store.ts";

/** The error a full disk gives, with the absolute path Deno puts in its message. */
export function enospc(path: string): Error {
  return Object.assign(
    new Error(`No space left on device (os error 28): write '${path}'`),
    { code: "ENOSPC" },
  );
}

/** Deno's writes, failing while `full` is set (appends write half their text first). */
export function fillableDisk(): JobFiles & { full: boolean } {
  const disk = {
    full: false,
    mkdir: (path: string) => disk.full ? Promise.reject(enospc(path)) : DENO_JOB_FILES.mkdir(path),
    writeAtomic: (path: string, text: string) =>
      disk.full ? Promise.reject(enospc(path)) : DENO_JOB_FILES.writeAtomic(path, text),
    append: async (path: string, text: string) => {
      if (!disk.full) return await DENO_JOB_FILES.append(path, text);
      await DENO_JOB_FILES.append(path, text.slice(0, text.length >> 1));
      throw enospc(path);
    },
  };
  return disk;
}
