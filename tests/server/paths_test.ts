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
  await refused("cases/a.nii/seg.nii", "invalid_path", /goes through a file as a folder/);
});

Deno.test("DataRoot.openRead: a folder swapped for a symbolic link after resolution is refused", async () => {
  await Deno.mkdir(join(rootDir, "swap"), { recursive: true });
  await Deno.writeTextFile(join(rootDir, "swap", "ct.nii"), "inside");
  await Deno.writeTextFile(join(outside, "ct.nii"), "outside");
  const resolved = await root.resolve("swap/ct.nii", { what: "input", mustExist: true });
  const file = await root.openRead(resolved, "input");
  assert.equal(new TextDecoder().decode(await new Response(file.readable).bytes()), "inside");
  // Between resolution and use, the folder becomes a link to a folder outside the root.
  await Deno.rename(join(rootDir, "swap"), join(rootDir, "swap-moved"));
  await Deno.symlink(outside, join(rootDir, "swap"));
  try {
    await assert.rejects(root.openRead(resolved, "input"), (e) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.code, "path_changed");
      assert.match(e.message, /"swap\/ct\.nii" changed since it was checked/);
      assert.ok(!e.message.includes(base), e.message);
      return true;
    });
  } finally {
    await Deno.remove(join(rootDir, "swap"));
    await Deno.rename(join(rootDir, "swap-moved"), join(rootDir, "swap"));
  }
});

Deno.test("DataRoot.writeNew: never replaces a file; refuses a folder swapped for a link", async () => {
  const bytes = new TextEncoder().encode("labels");
  const target = await root.resolve("made/new/seg.nii", { what: "output" });
  const info = await root.writeNew(target, bytes, "output");
  assert.equal(await Deno.readTextFile(target), "labels");
  assert.equal(info.ino, (await Deno.stat(target)).ino);
  // A second write to the same name is refused and leaves the first file as it was.
  await assert.rejects(root.writeNew(target, new TextEncoder().encode("other"), "output"), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 409);
    assert.equal(e.code, "output_exists");
    return true;
  });
  assert.equal(await Deno.readTextFile(target), "labels");
  // The existing input is not replaced either (output == an existing file).
  const input = join(rootDir, "cases", "a.nii");
  await assert.rejects(root.writeNew(input, bytes, "output"), /exists/);
  assert.equal(await Deno.readTextFile(input), "x");

  // Resolved, then its folder becomes a link to outside: nothing is written there.
  await Deno.mkdir(join(rootDir, "outs", "p"), { recursive: true });
  const later = await root.resolve("outs/p/seg.nii", { what: "output" });
  await Deno.rename(join(rootDir, "outs", "p"), join(rootDir, "outs", "p-moved"));
  await Deno.symlink(outside, join(rootDir, "outs", "p"));
  await assert.rejects(root.writeNew(later, bytes, "output"), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.code, "path_changed");
    return true;
  });
  assert.deepEqual(
    [...Deno.readDirSync(outside)].map((e) => e.name).filter((n) => n.includes("seg")),
    [],
  );
  // The same for a missing folder below the swapped one.
  const deeper = await root.resolve("outs/q/r/seg.nii", { what: "output" });
  await Deno.symlink(outside, join(rootDir, "outs", "q"));
  await assert.rejects(root.writeNew(deeper, bytes, "output"), /changed since it was checked/);
  assert.ok(!(await Deno.stat(join(outside, "r")).then(() => true, () => false)));
});

Deno.test("DataRoot.redact: root paths shown relative, other absolute paths hidden", () => {
  assert.equal(
    root.redact(`cannot read ${join(rootDir, "cases", "a.nii")}: gone`),
    "cannot read cases/a.nii: gone",
  );
  assert.equal(root.redact(`in ${rootDir}`), "in .");
  const hidden = root.redact(`open '${join(outside, "secret.nii")}' failed (/etc/x)`);
  assert.ok(!hidden.includes(outside) && !hidden.includes("/etc/x"), hidden);
  assert.match(hidden, /<a path outside the data root>/);
  assert.equal(root.redact("POST /v1/jobs/x/resume"), "POST /v1/jobs/x/resume");
});
