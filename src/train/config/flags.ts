/** The trainer's command line: dotted flags and positionals. */

import { ConfigError } from "../../nn/config_fields.ts";

/**
 * Splits a command line into flags and positionals, strictly: `--a.b value`, `--a.b=value`,
 * `--flag` (true when no value follows, or when named in `booleans`), `--no-flag` (false),
 * `-h` (help); `--` ends the flags. A flag given twice, a malformed name or an unknown
 * single-dash option throws {@link ConfigError}. Values may start with a single dash (`-1`).
 *
 * @example
 * parseDottedFlags(["--optimizer.lr", "3e-4", "--json", "run1"], { booleans: ["json"] })
 * // → { flags: { "optimizer.lr": "3e-4", json: true }, positionals: ["run1"] }
 */
export function parseDottedFlags(
  argv: readonly string[],
  { booleans = [] }: { booleans?: readonly string[] } = {},
): { flags: Record<string, string | boolean>; positionals: string[] } {
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  const put = (name: string, value: string | boolean) => {
    if (!/^[A-Za-z][\w-]*(\.[A-Za-z][\w-]*)*$/.test(name)) {
      throw new ConfigError(`malformed flag --${name}`);
    }
    if (Object.hasOwn(flags, name)) throw new ConfigError(`--${name} given twice`);
    flags[name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      put("help", true);
    } else if (arg.startsWith("--")) {
      const body = arg.slice(2);
      const eq = body.indexOf("=");
      if (eq >= 0) {
        put(body.slice(0, eq), body.slice(eq + 1));
      } else if (body.startsWith("no-") && body.length > 3) {
        put(body.slice(3), false);
      } else {
        const next = argv[i + 1];
        const takesValue = !booleans.includes(body) && next !== undefined &&
          !next.startsWith("--") && next !== "-h";
        put(body, takesValue ? next : true);
        if (takesValue) i++;
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      throw new ConfigError(`unknown option ${arg} (flags are spelled --name)`);
    } else {
      positionals.push(arg);
    }
  }
  return { flags, positionals };
}
