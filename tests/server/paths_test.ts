import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiError } from "../../src/server/errors.ts";
import { DataRoot } from "../../src/server/paths.ts";

const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_paths_" }));
globalThis.addEventListener("unload", () => Deno.removeSync(base, { recursive: true }));
const rootDir = join(base, "root");
const outside = join(base, "outside");
await Deno.mkdir(join(rootDir, "cases"), { recursive: true });
await Deno.mkdir(outside, { recursive: true });
await Deno.writeTextFile(join(rootDir, "cases", "a.nii"), "x");
await Deno.writeTextFile(join(outside, "secret.nii"), "x");
await Deno.symlink(outside, join(rootDir, "escape"));
await Deno.symlink(join(rootDir, "cases"), join(rootDir, "inside-link"));
const root = await DataRoot.open(rootDir);

async function refused(path: unknown, code: string, pattern: RegExp, mustExist = false) {
  await assert.rejects(root.resolve(path, { what: "input", mustExist }), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 400);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("DataRoot: relative and absolute paths inside the root resolve", async () => {
  const want = join(rootDir, "cases", "a.nii");
  assert.equal(await root.resolve("cases/a.nii", { what: "input", mustExist: true }), want);
  assert.equal(await root.resolve("./cases/a.nii", { what: "input" }), want);
  assert.equal(await root.resolve(want, { what: "input", mustExist: true }), want);
  // Not yet existing outputs, below existing or missing folders.
  assert.equal(
    await root.resolve("out/new/seg.nii.gz", { what: "output" }),
    join(rootDir, "out", "new", "seg.nii.gz"),
  );
  // A symbolic link that stays inside is fine.
  assert.equal(
    await root.resolve("inside-link/a.nii", { what: "input", mustExist: true }),
    want,
  );
});

Deno.test("DataRoot: '..', absolute paths elsewhere, symlinks out and hidden names are refused", async () => {
  await refused("../outside/secret.nii", "invalid_path", /'\.\.'/);
  await refused("cases/../../outside/secret.nii", "invalid_path", /'\.\.'/);
  await refused(join(outside, "secret.nii"), "invalid_path", /outside the data root/);
  await refused("/etc/passwd", "invalid_path", /outside the data root/);
  await refused("escape/secret.nii", "invalid_path", /symbolic link/);
  await refused("escape/new.nii", "invalid_path", /symbolic link/);
  await refused(".voxseg/jobs/x/job.json", "invalid_path", /hidden/);
  await refused("", "invalid_path", /non-empty/);
  await refused(42, "invalid_path", /non-empty string/);
  await refused("cases/a\0.nii", "invalid_path", /NUL/);
  await refused("cases/missing.nii", "not_found", /does not exist/, true);
});
