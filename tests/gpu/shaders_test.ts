import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { initGpu, type Kernel } from "../../src/gpu/mod.ts";
import { compileArgs } from "../../src/cli/compile.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const opts = { sanitizeResources: false, sanitizeOps: false };

async function opModules(): Promise<Record<string, unknown>[]> {
  const mods = [];
  for await (const e of Deno.readDir(join(root, "src/ops"))) {
    if (e.isFile && e.name.endsWith(".ts")) mods.push(await import(`../../src/ops/${e.name}`));
  }
  return mods;
}

Deno.test("every shader in shaders/ is a static text import of src/ (so compiled binaries embed it)", async () => {
  const sources: string[] = [];
  for await (const e of Deno.readDir(join(root, "src/ops"))) {
    if (e.isFile && e.name.endsWith(".ts")) {
      sources.push(await Deno.readTextFile(join(root, "src/ops", e.name)));
    }
  }
  const all = sources.join("\n");
  const shaders = [...Deno.readDirSync(join(root, "shaders"))].map((e) => e.name).filter((n) =>
    n.endsWith(".wgsl")
  );
  assert.ok(shaders.length >= 10);
  for (const name of shaders) {
    const file = name.replace(".", "\\.");
    const pattern = new RegExp(
      `from "\\.\\./\\.\\./shaders/${file}" with \\{\\s*type: "text",?\\s*\\}`,
    );
    assert.match(all, pattern, `shaders/${name} is not imported as text by any src/ops file`);
  }
});

Deno.test("every kernel the ops define compiles on this adapter", opts, async () => {
  await initGpu();
  let count = 0;
  for (const mod of await opModules()) {
    for (const value of Object.values(mod)) {
      const k = value as Partial<Kernel>;
      if (
        k && typeof k === "object" && typeof k.wgsl === "string" && typeof k.pipeline === "function"
      ) {
        assert.ok(k.pipeline!(), `${k.spec?.name} did not compile`);
        count++;
      }
    }
  }
  assert.ok(count >= 10, `only ${count} kernels found`);
});

Deno.test("the compile task includes the files loaded by URL at run time", async () => {
  const args = compileArgs("dist/voxseg");
  let found = 0;
  for await (const file of sourceFiles(join(root, "src"))) {
    const text = await Deno.readTextFile(file);
    for (const m of text.matchAll(/new URL\("(\.{1,2}\/[\w./]+)", import\.meta\.url\)/g)) {
      const loaded = relative(root, join(dirname(file), m[1]));
      if (!loaded.endsWith(".ts")) continue; // data files are read, not loaded as modules
      found++;
      assert.ok(args.includes(loaded), `${loaded} is loaded by URL but not --include'd`);
    }
  }
  assert.ok(found > 0, "no module is loaded by URL: the loader worker should be");
  assert.deepEqual(args.slice(-3), ["--output", "dist/voxseg", "mod.ts"]);
});

/** Every .ts file under `dir`, recursively. */
async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}
