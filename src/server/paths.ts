/**
 * Paths a client names (datasets, input volumes, outputs) are resolved inside the server's
 * data root and nowhere else: relative paths are taken from the root; absolute ones must
 * already lie inside it; `..` segments, hidden segments (`.voxseg`, `.git`, …), NUL bytes and
 * symbolic links resolving outside the root are refused.
 */

import { isAbsolute, join, normalize, relative, resolve, sep } from "node:path";
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
