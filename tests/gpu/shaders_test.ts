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

Deno.test("every shader in shaders/ and shaders/lib/ is a static text import of src/ (so compiled binaries embed it)", async () => {
  const sources: string[] = [];
  for (const dir of ["src/ops", "src/gpu"]) {
    for await (const file of sourceFiles(join(root, dir))) {
      sources.push(await Deno.readTextFile(file));
    }
  }
  const all = sources.join("\n");
  const shaders: string[] = [];
  for await (const file of filesUnder(join(root, "shaders"))) {
    if (file.endsWith(".wgsl")) shaders.push(relative(join(root, "shaders"), file));
  }
  assert.ok(shaders.length >= 10);
  assert.ok(shaders.some((s) => s.startsWith("lib/")), "no shared fragment in shaders/lib/");
  for (const name of shaders) {
    const file = name.replaceAll(".", "\\.");
    // From src/ops or src/gpu, a shader is two folders up.
    const pattern = new RegExp(
      `from "\\.\\./\\.\\./shaders/${file}" with \\{\\s*type: "text",?\\s*\\}`,
    );
    assert.match(
      all,
      pattern,
      `shaders/${name} is not imported as text by any src/ops or src/gpu file`,
    );
  }
});

Deno.test("a shared fragment is defined once: no function or struct of shaders/lib/ is declared again in a kernel", async () => {
  const declared = (text: string) =>
    [...text.matchAll(/^(?:fn|struct)\s+(\w+)/gm)].map((m) => m[1]);
  const libNames = new Map<string, string>();
  for await (const file of filesUnder(join(root, "shaders/lib"))) {
    for (const name of declared(await Deno.readTextFile(file))) {
      assert.ok(!libNames.has(name), `${name} is declared in two fragments`);
      libNames.set(name, relative(root, file));
    }
  }
  assert.ok(libNames.has("threadIndex") && libNames.has("loadPlane"));
  for await (const e of Deno.readDir(join(root, "shaders"))) {
    if (!e.isFile || !e.name.endsWith(".wgsl")) continue;
    for (const name of declared(await Deno.readTextFile(join(root, "shaders", e.name)))) {
      assert.ok(
        !libNames.has(name),
        `shaders/${e.name} declares ${name} again (${libNames.get(name)})`,
      );
    }
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
  for await (const path of filesUnder(dir)) if (path.endsWith(".ts")) yield path;
}

/** Every file under `dir`, recursively. */
async function* filesUnder(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* filesUnder(path);
    else yield path;
  }
}
