/**
 * The layer order of the architecture contract (DESIGN.md, "Layers"), checked on every import
 * of every source file under src/: static `import … from`, `export … from`, and dynamic
 * `import("…")` with a string literal, type-only imports included.
 *
 * Bottom first, each layer may use those below it and never one above:
 *
 *   base → gpu → ops → autograd → nn → infer → train → server → cli
 *
 * server and cli both sit on train; cli may use server (`voxseg serve` starts it) and never the
 * reverse, which is the same as stacking cli on server. data is a column beside the stack: it
 * uses base and gpu (the narrow upload) and is used by infer, train, server and cli.
 * Outside src/, source may import only WGSL from shaders/ and deno.json (the version).
 *
 * A second check forbids import cycles among src/ files, dynamic imports included. A third
 * holds the import reader to `deno info`, so an import it failed to see fails this test.
 */

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Bottom first: a layer may use every layer before it. */
const STACK = ["base", "gpu", "ops", "autograd", "nn", "infer", "train", "server", "cli"];

/** Layers beside the stack: what each may use and which layers may use it. */
const COLUMNS: Record<string, { uses: string[]; usedBy: string[] }> = {
  data: { uses: ["base", "gpu"], usedBy: ["infer", "train", "server", "cli"] },
};

/** What src/ may import from the rest of the repository. */
const OUTSIDE_SRC = [/^shaders\/(?:lib\/)?[^/]+\.wgsl$/, /^deno\.json$/];

/**
 * Violations that exist today and are being removed. This list must shrink to empty: the test
 * fails on any violation not listed here and on any entry that no longer occurs, so fixing one
 * means deleting its line. Never add to it to make a new import pass.
 */
const KNOWN_VIOLATIONS: string[] = [];

type ImportKind = "static" | "type" | "re-export" | "dynamic";

interface Import {
  /** The specifier as written. */
  specifier: string;
  kind: ImportKind;
  line: number;
}

interface Edge extends Import {
  /** Repository-relative source file. */
  from: string;
  /** Repository-relative target file. */
  to: string;
}

interface Token {
  kind: "word" | "punct" | "string" | "template" | "regex";
  text: string;
  pos: number;
}

/** Keywords after which a `/` starts a regular expression rather than a division. */
const BEFORE_REGEX = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "instanceof",
  "yield",
  "await",
]);

function regexAllowed(prev: Token | undefined): boolean {
  if (!prev) return true;
  if (prev.kind === "word") return BEFORE_REGEX.has(prev.text);
  if (prev.kind === "punct") return !")]}".includes(prev.text);
  return false;
}

/**
 * Splits TypeScript source into the tokens the import reader needs: words, one-character
 * punctuation, and string literals with their value. Comments are dropped; template literals
 * and regular expressions become single tokens (with `${…}` expressions inside templates
 * tokenised like any code).
 */
function tokenize(src: string): Token[] {
  const out: Token[] = [];
  // For each open `${` of a template literal, the brace depth at which it closes.
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  const n = src.length;

  /** Scans template text from `j` to its closing backtick or the next `${`. */
  const template = (j: number, start: number): number => {
    while (j < n) {
      const ch = src[j];
      if (ch === "\\") j += 2;
      else if (ch === "`") {
        out.push({ kind: "template", text: "", pos: start });
        return j + 1;
      } else if (ch === "$" && src[j + 1] === "{") {
        templates.push(depth);
        out.push({ kind: "template", text: "", pos: start });
        return j + 2;
      } else j++;
    }
    return n;
  };

  while (i < n) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
    } else if (c === "/" && src[i + 1] === "/") {
      const end = src.indexOf("\n", i);
      i = end < 0 ? n : end;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = "";
      while (j < n && src[j] !== c) {
        if (src[j] === "\\") {
          value += src[j + 1];
          j += 2;
        } else value += src[j++];
      }
      out.push({ kind: "string", text: value, pos: i });
      i = j + 1;
    } else if (c === "`") {
      i = template(i + 1, i);
    } else if (c === "}" && templates.length && templates[templates.length - 1] === depth) {
      templates.pop();
      i = template(i + 1, i);
    } else if (c === "/" && regexAllowed(out[out.length - 1])) {
      let j = i + 1;
      let inClass = false;
      while (j < n && (inClass || src[j] !== "/") && src[j] !== "\n") {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") inClass = true;
        else if (src[j] === "]") inClass = false;
        j++;
      }
      j++;
      while (j < n && /[a-z]/.test(src[j])) j++;
      out.push({ kind: "regex", text: src.slice(i, j), pos: i });
      i = j;
    } else if (/[A-Za-z0-9_$#@]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$]/.test(src[j])) j++;
      out.push({ kind: "word", text: src.slice(i, j), pos: i });
      i = j;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      out.push({ kind: "punct", text: c, pos: i });
      i++;
    }
  }
  return out;
}

/** The imports of one source file, in order. */
function readImports(src: string): Import[] {
  const tokens = tokenize(src);
  const lineStarts = [0];
  for (let i = 0; i < src.length; i++) if (src[i] === "\n") lineStarts.push(i + 1);
  const lineOf = (pos: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const found: Import[] = [];
  const add = (t: Token, kind: ImportKind) =>
    found.push({ specifier: t.text, kind, line: lineOf(t.pos) });
  /** The `"…"` after `from` at or after token `k`, before the statement ends. */
  const fromClause = (k: number): Token | undefined => {
    for (let j = k; j < tokens.length; j++) {
      const t = tokens[j];
      if (t.kind === "punct" && t.text === ";") return undefined;
      if (t.kind === "string") {
        const before = tokens[j - 1];
        return before.kind === "word" && before.text === "from" ? t : undefined;
      }
    }
    return undefined;
  };

  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind !== "word" || tokens[k - 1]?.text === ".") continue;
    const next = tokens[k + 1];
    if (!next) break;
    if (t.text === "import") {
      if (next.text === "(") {
        const spec = tokens[k + 2];
        const close = tokens[k + 3]?.text;
        if (spec?.kind === "string" && (close === ")" || close === ",")) add(spec, "dynamic");
      } else if (next.kind === "string") {
        add(next, "static");
      } else if (next.kind === "word" || next.text === "{" || next.text === "*") {
        const after = tokens[k + 2]?.text;
        const typeOnly = next.text === "type" && after !== "from" && after !== ",";
        const spec = fromClause(k + 1);
        if (spec) add(spec, typeOnly ? "type" : "static");
      }
    } else if (t.text === "export") {
      const typeOnly = next.text === "type";
      const head = tokens[k + (typeOnly ? 2 : 1)];
      if (head?.text === "*") {
        const spec = fromClause(k + 1);
        if (spec) add(spec, typeOnly ? "type" : "re-export");
      } else if (head?.text === "{") {
        let j = k + (typeOnly ? 3 : 2);
        while (j < tokens.length && tokens[j].text !== "}") j++;
        const from = tokens[j + 1];
        const spec = tokens[j + 2];
        if (from?.kind === "word" && from.text === "from" && spec?.kind === "string") {
          add(spec, typeOnly ? "type" : "re-export");
        }
      }
    }
  }
  return found;
}

const SOURCE = /\.(ts|tsx|mts|js|mjs)$/;

/** Every source file under `dir`, repository-relative; built bundles (`dist/`) are not source. */
function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== "dist") files.push(...sourceFiles(path));
    } else if (SOURCE.test(entry.name)) files.push(path);
  }
  return files.sort();
}

/** The relative imports of every file under src/, resolved to repository-relative files. */
function importGraph(): { files: string[]; edges: Edge[]; unresolved: string[] } {
  const files = sourceFiles("src");
  const edges: Edge[] = [];
  const unresolved: string[] = [];
  for (const from of files) {
    const url = pathToFileURL(join(ROOT, from));
    for (const imp of readImports(readFileSync(url, "utf8"))) {
      if (!imp.specifier.startsWith(".")) continue; // npm:, node:, or an import-map name
      const target = fileURLToPath(new URL(imp.specifier, url));
      const to = relative(ROOT, target).split("\\").join("/");
      if (!existsSync(target) || !statSync(target).isFile()) {
        unresolved.push(`${from}:${imp.line} imports "${imp.specifier}", which is no file`);
      } else edges.push({ ...imp, from, to });
    }
  }
  return { files, edges, unresolved };
}

function layerOf(file: string): string | undefined {
  const m = /^src\/([^/]+)\//.exec(file);
  return m?.[1];
}

/** Why `from` may not import `to`, or undefined when it may. */
function layerRule(from: string, to: string): string | undefined {
  if (from === to) return undefined;
  const fromColumn = COLUMNS[from];
  const toColumn = COLUMNS[to];
  if (fromColumn) {
    return fromColumn.uses.includes(to)
      ? undefined
      : `${from} may use only ${fromColumn.uses.join(", ")}`;
  }
  if (toColumn) {
    return toColumn.usedBy.includes(from)
      ? undefined
      : `only ${toColumn.usedBy.join(", ")} may use ${to}`;
  }
  const below = STACK.indexOf(from);
  if (STACK.indexOf(to) < below) return undefined;
  return `${from} may use only the layers below it (${STACK.slice(0, below).join(", ")})`;
}

/** Every import that breaks the layer order, keyed `from → to`, with its explanation. */
function layerViolations(edges: Edge[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of edges) {
    const key = `${e.from} → ${e.to}`;
    const from = layerOf(e.from)!;
    const where = `${e.from}:${e.line} imports "${e.specifier}" (${e.kind})`;
    if (!e.to.startsWith("src/")) {
      if (!OUTSIDE_SRC.some((re) => re.test(e.to))) {
        out.set(key, `${where}: outside src/ only shaders/*.wgsl and deno.json may be imported`);
      }
      continue;
    }
    const to = layerOf(e.to)!;
    const known = (layer: string) => STACK.includes(layer) || layer in COLUMNS;
    const unknown = [from, to].filter((l) => !known(l));
    if (unknown.length) {
      out.set(key, `${where}: src/${unknown[0]}/ is in no layer; give it a place in the order`);
      continue;
    }
    const rule = layerRule(from, to);
    if (rule) out.set(key, `${where}: ${rule}`);
  }
  return out;
}

/** The strongly connected components with more than one file (or a file importing itself). */
function cycles(files: string[], edges: Edge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) if (next.has(e.to)) next.get(e.from)!.push(e.to);
  // Tarjan's algorithm.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || next.get(v)!.includes(v)) out.push(group.sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return out;
}

/** One import path that starts and ends at the first file of `group`, inside the group. */
function cyclePath(group: string[], edges: Edge[]): string[] {
  const inGroup = new Set(group);
  const start = group[0];
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const e of edges) {
      if (e.from !== v || !inGroup.has(e.to)) continue;
      if (e.to === start) {
        const path = [start];
        for (let u = v; u !== start; u = cameFrom.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!cameFrom.has(e.to)) {
        cameFrom.set(e.to, v);
        queue.push(e.to);
      }
    }
  }
  return [start];
}

/** Every violation, keyed for KNOWN_VIOLATIONS, with a message naming file, import and rule. */
function allViolations(): Map<string, string> {
  const { files, edges, unresolved } = importGraph();
  const out = layerViolations(edges);
  for (const u of unresolved) out.set(u, u);
  for (const group of cycles(files, edges)) {
    const key = `cycle: ${group.join(", ")}`;
    out.set(
      key,
      `import cycle among ${group.length} files (${cyclePath(group, edges).join(" → ")}); ` +
        `all of them: ${group.join(", ")}`,
    );
  }
  return out;
}

Deno.test("layers: every import under src/ follows the layer order, and no import cycle", () => {
  const found = allViolations();
  const known = new Set(KNOWN_VIOLATIONS);
  const unexpected = [...found].filter(([key]) => !known.has(key)).map(([, why]) => why);
  const gone = KNOWN_VIOLATIONS.filter((key) => !found.has(key))
    .map((key) => `no longer occurs, so delete it from KNOWN_VIOLATIONS: ${key}`);
  const problems = [...unexpected, ...gone];
  assert.deepEqual(problems, [], `against DESIGN.md's layer order:\n  ${problems.join("\n  ")}`);
});

Deno.test("layers: the rule table says what DESIGN.md says", () => {
  assert.equal(layerRule("ops", "gpu"), undefined);
  assert.equal(layerRule("nn", "base"), undefined);
  assert.equal(layerRule("train", "infer"), undefined);
  assert.equal(layerRule("cli", "server"), undefined);
  assert.equal(layerRule("infer", "data"), undefined);
  assert.equal(layerRule("data", "gpu"), undefined);
  assert.match(layerRule("ops", "train")!, /ops may use only the layers below it/);
  assert.match(layerRule("infer", "train")!, /infer may use only/);
  assert.match(layerRule("server", "cli")!, /server may use only/);
  assert.match(layerRule("base", "gpu")!, /base may use only the layers below it \(\)/);
  assert.match(layerRule("data", "ops")!, /data may use only base, gpu/);
  assert.match(layerRule("nn", "data")!, /only infer, train, server, cli may use data/);
});

Deno.test("layers: the import reader sees static, type, re-export and dynamic imports", () => {
  const src = [
    `// import { no } from "./comment.ts";`,
    `/* import("./block.ts") */`,
    `import { a, type B } from "./a.ts";`,
    `import type { C } from "./c.ts";`,
    `import * as d from "./d.ts";`,
    `import "./side.ts";`,
    `import text from "../shaders/x.wgsl" with { type: "text" };`,
    `export { e } from "./e.ts";`,
    `export type { F } from "./f.ts";`,
    `export * as g from "./g.ts";`,
    `export { local };`,
    `const re = /["'\`]/g, s = "import('./string.ts')", t = \`\${import.meta.url}/x\`;`,
    `const lazy = () => import("./lazy.ts");`,
    `const o = { import: "./not.ts" };`,
  ].join("\n");
  assert.deepEqual(
    readImports(src).map((i) => `${i.line} ${i.kind} ${i.specifier}`),
    [
      "3 static ./a.ts",
      "4 type ./c.ts",
      "5 static ./d.ts",
      "6 static ./side.ts",
      "7 static ../shaders/x.wgsl",
      "8 re-export ./e.ts",
      "9 type ./f.ts",
      "10 re-export ./g.ts",
      "13 dynamic ./lazy.ts",
    ],
  );
});

Deno.test("layers: the import reader finds what deno info finds", async () => {
  const { files, edges } = importGraph();
  const mine = new Map<string, Set<string>>(files.map((f) => [f, new Set()]));
  for (const e of edges) mine.get(e.from)!.add(e.to);
  const theirs = new Map<string, Set<string>>();
  const root = pathToFileURL(ROOT).href;
  // One `deno info` per file not yet reached from an earlier root.
  for (const file of files) {
    if (theirs.has(file)) continue;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", file],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, `deno info ${file}: ${new TextDecoder().decode(out.stderr)}`);
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
      }[];
    };
    for (const m of graph.modules) {
      if (!m.specifier.startsWith(`${root}src/`) || !SOURCE.test(m.specifier)) continue;
      const deps = new Set<string>();
      for (const d of m.dependencies ?? []) {
        for (const s of [d.code?.specifier, d.type?.specifier]) {
          if (s?.startsWith(root)) deps.add(s.slice(root.length));
        }
      }
      theirs.set(m.specifier.slice(root.length), deps);
    }
  }
  const differ: string[] = [];
  for (const file of files) {
    const a = [...mine.get(file)!].sort();
    const b = [...(theirs.get(file) ?? [])].sort();
    if (a.join() !== b.join()) {
      differ.push(`${file}: read ${a.join(", ")}; deno info ${b.join(", ")}`);
    }
  }
  assert.deepEqual(differ, []);
});
