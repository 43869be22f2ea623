import { assertEquals, assertThrows } from "./assert.ts";
import {
  ConfigError,
  configFields,
  configValue,
  defaultTrainConfig,
  describeConfigFields,
  parseDottedFlags,
  resolveConfig,
} from "../../src/train/config.ts";

/** Every leaf path of a plain object. */
function leaves(obj: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(obj).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? leaves(v as Record<string, unknown>, path)
      : [path];
  });
}

Deno.test("config: the field table and the defaults describe the same fields", () => {
  const optional = [
    "loss.classWeights",
    "model.arch",
    "model.strides",
    "model.kernels",
    "model.maxChannels",
  ];
  assertEquals(
    leaves(defaultTrainConfig as unknown as Record<string, unknown>).sort(),
    configFields.map((f) => f.path).filter((p) => !optional.includes(p)).sort(),
  );
  // and every default passes its own field's validation
  assertEquals(resolveConfig(undefined, {}), defaultTrainConfig);
});

Deno.test("config: defaults ← file ← flags; results are fresh copies", () => {
  const file = {
    model: { norm: "instance", depth: 3 },
    optimizer: { kind: "sgd", lr: 0.01 },
    data: { patchSize: [32, 48, 64], augment: { noise: true } },
    epochs: 7,
  };
  const c = resolveConfig(file, { "optimizer.lr": "3e-4", "model.activation": "leaky_relu" });
  assertEquals(c.model, {
    ...defaultTrainConfig.model,
    norm: "instance",
    depth: 3,
    activation: "leaky_relu",
  });
  assertEquals(c.optimizer.kind, "sgd");
  assertEquals(c.optimizer.lr, 3e-4); // the flag beats the file
  assertEquals(c.data.patchSize, [32, 48, 64]);
  assertEquals(c.data.augment, { ...defaultTrainConfig.data.augment, noise: true });
  assertEquals(c.epochs, 7);
  c.data.patchSize[0] = 999;
  c.model.depth = 1;
  assertEquals(defaultTrainConfig.data.patchSize, [64, 64, 64]);
  assertEquals(defaultTrainConfig.model.depth, 4);
});

Deno.test("config: short aliases and every value syntax", () => {
  const c = resolveConfig(undefined, {
    lr: "2e-4",
    epochs: "3",
    "batch-size": "4",
    patch: "32",
    optimizer: "adamw",
    schedule: "cosine",
    norm: "batch",
    dataset: "data/covid",
    "data.augment.flip": "false",
    "data.augment.rotate90": true,
    "data.window": "-1000,400.5",
    "data.normalisation": "zscore",
    "loss.classWeights": "0.2,1,3",
    "loss.includeBackground": "yes",
    "optimizer.nesterov": false,
    seed: "7",
    out: "runs/x",
    unset: undefined,
  });
  assertEquals(c.optimizer, {
    ...defaultTrainConfig.optimizer,
    lr: 2e-4,
    kind: "adamw",
    nesterov: false,
  });
  assertEquals([c.epochs, c.data.batchSize, c.data.patchSize], [3, 4, [32, 32, 32]]);
  assertEquals([c.schedule.kind, c.model.norm, c.data.dataset], ["cosine", "batch", "data/covid"]);
  assertEquals(c.data.augment.flip, false);
  assertEquals(c.data.augment.rotate90, true);
  assertEquals(c.data.window, [-1000, 400.5]);
  assertEquals(c.data.normalisation, "zscore");
  assertEquals(c.loss.classWeights, [0.2, 1, 3]);
  assertEquals(c.loss.includeBackground, true);
  assertEquals([c.seed, c.out], [7, "runs/x"]);
  assertEquals(configValue(c, "data.augment.flip"), false);
  assertEquals(resolveConfig({ loss: { classWeights: null } }, {}).loss.classWeights, undefined);
});

Deno.test("config: bad values name the field, the value and what is allowed", () => {
  const bad = (flags: Record<string, string | boolean>, message: string, file?: unknown) =>
    assertThrows(() => resolveConfig(file, flags), ConfigError, message);
  bad(
    { "model.norm": "instanse" },
    'model.norm must be one of none, instance, batch, got "instanse" (from --model.norm)',
  );
  bad({ lr: "abc" }, 'optimizer.lr must be a number in (0, ∞), got "abc" (from --lr)');
  bad({ lr: "0" }, "optimizer.lr must be a number in (0, ∞)");
  bad({ lr: "" }, "optimizer.lr must be a number");
  bad({ epochs: "2.5" }, 'epochs must be an integer in [1, ∞], got "2.5"');
  bad({ "data.foregroundFraction": "1.5" }, "data.foregroundFraction must be a number in [0, 1]");
  bad({ "optimizer.momentum": "1" }, "optimizer.momentum must be a number in [0, 1)");
  bad({ patch: "32,64" }, "data.patchSize must be D,H,W positive integers");
  bad({ patch: "32,0,64" }, "data.patchSize must be D,H,W");
  bad({ "data.window": "400,-1000" }, "data.window must be LOW,HIGH numbers with LOW < HIGH");
  bad(
    { "data.normalisation": "ct" },
    'data.normalisation must be one of auto, ct-window, zscore, zscore-case, none, got "ct"',
  );
  bad({ "data.augment.flip": "maybe" }, 'data.augment.flip must be true or false, got "maybe"');
  bad({ lr: true }, "--lr needs a value: optimizer.lr must be a number");
  bad({}, "model.classes must be an integer in [2, 256], got 1 (in the config file)", {
    model: { classes: 1 },
  });
  bad({}, "model.norm must be one of none, instance, batch, got 3 (in the config file)", {
    model: { norm: 3 },
  });
  bad({}, "data.patchSize must be D,H,W", { data: { patchSize: "64" } });
  bad({}, '"model" must be a JSON object, got 3', { model: 3 });
  bad({}, "the config file must be a JSON object", [1]);
});

Deno.test("config: unknown keys are rejected with a suggestion", () => {
  const bad = (flags: Record<string, string>, message: string, file?: unknown) =>
    assertThrows(() => resolveConfig(file, flags), ConfigError, message);
  bad({ "model.nrom": "instance" }, "unknown flag --model.nrom (did you mean --model.norm?)");
  bad({ lrr: "1" }, "unknown flag --lrr (did you mean --lr?)");
  bad({ "optimizer.learningRate": "1" }, "unknown flag --optimizer.learningRate");
  bad({ patience: "3" }, "(did you mean --schedule.patience or --earlyStopping.patience?)");
  bad({ batchsize: "3" }, "(did you mean --data.batchSize?)");
  bad({ zzzzzzzz: "3" }, "unknown flag --zzzzzzzz");
  assertThrows(() => resolveConfig(undefined, { zzzzzzzz: "3" }), ConfigError, "zzzzzzzz");
  bad({}, 'unknown key "model.nrom" in the config file (did you mean "model.norm"?)', {
    model: { nrom: "x" },
  });
  bad({}, 'unknown key "optimiser" in the config file (did you mean "optimizer"?)', {
    optimiser: {},
  });
  bad(
    {},
    'unknown key "data.augment.flips" in the config file (did you mean "data.augment.flip"?)',
    {
      data: { augment: { flips: true } },
    },
  );
  const e = assertThrows(() => resolveConfig(undefined, { zzzzzzzz: "3" }), ConfigError);
  assertEquals(e.message.includes("did you mean"), false);
});

Deno.test("config: combinations are checked together", () => {
  const bad = (flags: Record<string, string>, message: string) =>
    assertThrows(() => resolveConfig(undefined, flags), ConfigError, message);
  bad(
    { patch: "36,64,64" },
    "data.patchSize [36,64,64] must be divisible by 2^(model.depth − 1) = 8",
  );
  resolveConfig(undefined, { patch: "36,64,64", "model.depth": "3" }); // 36 % 4 = 0
  bad({ "loss.classWeights": "1,2" }, "loss.classWeights has 2 values but model.classes is 3");
  bad({ "loss.tverskyWeight": "0", "loss.ceWeight": "0" }, "nothing to train on");
  bad({ "loss.alpha": "0", "loss.beta": "0" }, "loss.alpha + loss.beta must be > 0");
  bad(
    { optimizer: "sgd", "optimizer.momentum": "0" },
    "optimizer.nesterov needs optimizer.momentum > 0",
  );
  bad(
    { schedule: "cosine", epochs: "1", itersPerEpoch: "10", "schedule.warmupSteps": "10" },
    "schedule.warmupSteps (10) must be less than the 10 training steps",
  );
  bad(
    { lr: "1e-4", "schedule.minLr": "1e-3" },
    "schedule.minLr (0.001) must not exceed optimizer.lr",
  );
  bad({ lr: "1e-3", "optimizer.lr": "1e-4" }, "--lr and --optimizer.lr both set optimizer.lr");
});

Deno.test("parseDottedFlags: values, =, bare booleans, --no-, -h, --, negatives", () => {
  const { flags, positionals } = parseDottedFlags([
    "run1",
    "--optimizer.lr",
    "3e-4",
    "--data.patchSize=32,64,64",
    "--data.augment.flip",
    "--data.window",
    "-1000,400",
    "--no-optimizer.nesterov",
    "--json",
    "run2",
    "-h",
    "--",
    "--not-a-flag",
  ], { booleans: ["json"] });
  assertEquals(flags, {
    "optimizer.lr": "3e-4",
    "data.patchSize": "32,64,64",
    "data.augment.flip": true,
    "data.window": "-1000,400",
    "optimizer.nesterov": false,
    json: true,
    help: true,
  });
  assertEquals(positionals, ["run1", "run2", "--not-a-flag"]);
  assertEquals(parseDottedFlags(["--last"]).flags, { last: true });
  assertEquals(parseDottedFlags(["--out="]).flags, { out: "" });
});

Deno.test("parseDottedFlags: repeated, malformed and single-dash flags are errors", () => {
  assertThrows(() => parseDottedFlags(["--lr", "1", "--lr", "2"]), ConfigError, "--lr given twice");
  assertThrows(() => parseDottedFlags(["--a..b", "1"]), ConfigError, "malformed flag --a..b");
  assertThrows(() => parseDottedFlags(["--.lr", "1"]), ConfigError, "malformed flag");
  assertThrows(() => parseDottedFlags(["-x"]), ConfigError, "unknown option -x");
});

Deno.test("parseDottedFlags feeds resolveConfig", () => {
  const { flags } = parseDottedFlags([
    "--model.norm",
    "instance",
    "--patch",
    "32,64,64",
    "--no-data.augment.flip",
  ]);
  const c = resolveConfig(undefined, flags);
  assertEquals([c.model.norm, c.data.patchSize, c.data.augment.flip], [
    "instance",
    [32, 64, 64],
    false,
  ]);
});

Deno.test("describeConfigFields lists every flag with its alias and default", () => {
  const text = describeConfigFields();
  for (const f of configFields) assertEquals(text.includes(`--${f.path}`), true, f.path);
  assertEquals(
    /--optimizer\.lr, --lr +initial learning rate \(0\.001; a number in \(0, ∞\)\)/.test(text),
    true,
  );
  assertEquals(text.includes("--data.patchSize, --patch"), true);
  assertEquals(text.includes("(64,64,64;"), true);
});
