/**
 * Paths a client names (datasets, input volumes, outputs) are resolved inside the server's
 * data root and nowhere else: relative paths are taken from the root; absolute ones must
 * already lie inside it; `..` segments, hidden segments (`.voxseg`, `.git`, …), NUL bytes and
 * symbolic links resolving outside the root are refused.
 *
 * A job uses its paths minutes after it resolved them, so the files are checked again at use:
 * {@link DataRoot.openRead} refuses a file reached through a folder that became a symbolic link
 * since, and {@link DataRoot.writeNew} writes next to the target and links it into place only
 * when its folder is still the one resolved, never replacing a file.
 */

import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from "node:path";
import { writeFileNew } from "../base/atomic.ts";
import { ApiError } from "./errors.ts";

export interface ResolveOptions {
  /** What the path is, for messages ("dataset", "input", "output"). */
  what: string;
  /** The path must exist (datasets, inputs); otherwise its nearest existing parent must. */
  mustExist?: boolean;
}

/** The data root: where every client-named path must stay. */
export class DataRoot {
  /** The root with symbolic links resolved. */
  readonly real: string;

  private constructor(real: string) {
    this.real = real;
  }

  /** Opens (creating it if missing) the folder at `path` as the data root. */
  static async open(path: string): Promise<DataRoot> {
    await Deno.mkdir(path, { recursive: true });
    return new DataRoot(await Deno.realPath(path));
  }

  /** True when `absolute` is the root or inside it (lexically). */
  contains(absolute: string): boolean {
    const rel = relative(this.real, absolute);
    return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
  }

  /** `absolute` relative to the root when inside it, else as is: how paths are shown. */
  display(absolute: string): string {
    return this.contains(absolute) ? relative(this.real, absolute) || "." : absolute;
  }

  /**
   * `text` (an error message) with the paths inside the root shown relative to it and any
   * other absolute path hidden, so messages sent to clients never show where files live.
   */
  redact(text: string): string {
    const inside = text.split(this.real + sep).join("").split(this.real).join(".");
    return inside.replace(
      /(^|[\s'"(=:`])\/(?!v1\/)[^\s'"),`]+/g,
      "$1<a path outside the data root>",
    );
  }

  /**
   * Opens `resolved` (a path from {@link resolve}) for reading, checking that the opened file
   * is still the one at that symlink-free path: a folder on its way swapped for a symbolic
   * link since it was resolved is refused (400 `path_changed`).
   */
  async openRead(resolved: string, what: string): Promise<Deno.FsFile> {
    const file = await Deno.open(resolved, { read: true });
    try {
      const [opened, real] = await Promise.all([file.stat(), Deno.realPath(resolved)]);
      const now = await Deno.stat(real);
      if (
        real !== resolved || !this.contains(real) || now.dev !== opened.dev ||
        now.ino !== opened.ino
      ) {
        throw this.#changed(resolved, what);
      }
      return file;
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Writes a new file at `resolved` (a path from {@link resolve}), never replacing one: the
   * data goes to a temporary file in its folder, the folder is checked to be still the same
   * symlink-free folder inside the root, then the file is hard-linked into place, which fails
   * when the name exists. 409 `output_exists` when it does, 400 `path_changed` when a folder
   * on its way moved. Returns the written file's info (for {@link sameFile} later).
   */
  async writeNew(resolved: string, data: Uint8Array, what: string): Promise<Deno.FileInfo> {
    const folder = dirname(resolved);
    await this.#checkUnchanged(folder, resolved, what);
    await Deno.mkdir(folder, { recursive: true });
    try {
      return await writeFileNew(resolved, data, {
        beforeCommit: () => this.#checkUnchanged(folder, resolved, what),
      });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) throw this.exists(resolved, what);
      throw e;
    }
  }

  /** The 409 for a target that exists. */
  exists(resolved: string, what: string, field = what): ApiError {
    return new ApiError(
      409,
      "output_exists",
      `${what} ${JSON.stringify(this.display(resolved))} exists and files are never replaced; ` +
        `choose another "${field}" name`,
    );
  }

  /** The deepest existing folder of `folder` must resolve to itself, inside the root. */
  async #checkUnchanged(folder: string, target: string, what: string): Promise<void> {
    let existing = folder;
    while (true) {
      try {
        const real = await Deno.realPath(existing);
        if (real !== existing || !this.contains(real)) throw this.#changed(target, what);
        return;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        const up = dirname(existing);
        if (up === existing || !this.contains(up)) throw this.#changed(target, what);
        existing = up;
      }
    }
  }

  #changed(resolved: string, what: string): ApiError {
    return new ApiError(
      400,
      "path_changed",
      `${what} ${JSON.stringify(this.display(resolved))} changed since it was checked: a ` +
        "folder on its way was moved or replaced by a symbolic link; restore it or submit again",
    );
  }

  /**
   * The absolute, symlink-free path for a client's `path`; throws a 400 {@link ApiError}
   * (`invalid_path`, or `not_found` when `mustExist` and it does not exist) otherwise.
   *
   * @example
   * const dir = await root.resolve("synth", { what: "dataset", mustExist: true });
   */
  async resolve(path: unknown, { what, mustExist = false }: ResolveOptions): Promise<string> {
    const refuse = (why: string): never => {
      throw new ApiError(400, "invalid_path", `${what} path ${JSON.stringify(path)} ${why}`);
    };
    if (typeof path !== "string" || path.trim() === "") return refuse("must be a non-empty string");
    if (path.includes("\0")) return refuse("contains a NUL byte");
    const segments = path.split(/[\\/]+/);
    if (segments.includes("..")) return refuse("must not contain '..'");
    if (segments.some((s) => s.startsWith(".") && s !== ".")) {
      return refuse("must not name hidden files or folders");
    }
    const lexical = isAbsolute(path) ? normalize(path) : resolve(this.real, path);
    if (!this.contains(lexical)) return refuse("is outside the data root");

    // Resolve symbolic links on the deepest part that exists; it must stay inside the root.
    let existing = lexical;
    const missing: string[] = [];
    let real: string | undefined;
    while (real === undefined) {
      try {
        real = await Deno.realPath(existing);
      } catch (e) {
        if (e instanceof Deno.errors.NotADirectory) {
          return refuse("goes through a file as a folder");
        }
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        if (mustExist) {
          throw new ApiError(400, "not_found", `${what} ${JSON.stringify(path)} does not exist`);
        }
        const parent = resolve(existing, "..");
        if (parent === existing) return refuse("has no existing parent");
        missing.unshift(existing.slice(parent.length + (parent.endsWith(sep) ? 0 : 1)));
        existing = parent;
      }
    }
    if (!this.contains(real)) {
      return refuse("resolves (through a symbolic link) outside the data root");
    }
    return missing.length ? join(real, ...missing) : real;
  }
}

/** True when `a` and `b` describe the same, unchanged file (device, inode, size, mtime). */
export function sameFile(a: FileStamp, b: FileStamp): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** What identifies a file's content as written: device, inode, size and modification time. */
export interface FileStamp {
  dev: number;
  ino: number | null;
  size: number;
  mtimeMs: number | null;
}

/** The {@link FileStamp} of a file's info. */
export function stampOf(info: Deno.FileInfo): FileStamp {
  return { dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtime?.getTime() ?? null };
}
