/** JSON Schemas shared by the route table's OpenAPI descriptions. */

import { JOB_STATES } from "../jobs/job.ts";
import type { JsonSchema, ResponseSpec } from "./table.ts";

export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

/** A DICOM UID: digit components without leading zeros, dot-separated. */
const UID_PATTERN = "^(0|[1-9][0-9]*)(\\.(0|[1-9][0-9]*))+$";

/** The options both kinds of prediction request take. */
const predictOptions = {
  overlap: { type: "number", minimum: 0, maximum: 0.95 },
  tta: { type: "boolean" },
  precision: {
    type: "string",
    enum: ["f32", "f16"],
    description: "convolution operands in binary16 with f32 sums (f16), or f32 (default)",
  },
};

export const schemas: Record<string, JsonSchema> = {
  Error: {
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["code", "message"],
        properties: { code: { type: "string" }, message: { type: "string" } },
      },
    },
  },
  Job: {
    type: "object",
    required: ["id", "kind", "name", "state", "createdAt", "request", "attempts"],
    properties: {
      id: { type: "string" },
      kind: { enum: ["train", "predict"] },
      name: { type: "string" },
      state: { enum: [...JOB_STATES] },
      createdAt: { type: "string", format: "date-time" },
      startedAt: { type: "string", format: "date-time" },
      finishedAt: { type: "string", format: "date-time" },
      request: { type: "object" },
      attempts: { type: "integer" },
      progress: { type: "object" },
      metrics: { type: "object", additionalProperties: { type: ["number", "null"] } },
      plan: ref("JobPlan"),
      result: {
        type: "object",
        description: "training: the model, checkpoint, scores, how it stopped, and `plan`; " +
          "prediction: the output and per-class volumes",
      },
      error: {
        type: "object",
        properties: { code: { type: "string" }, message: { type: "string" } },
      },
    },
  },
  Model: {
    type: "object",
    required: ["name", "source", "sizeBytes", "modifiedAt"],
    properties: {
      name: { type: "string" },
      source: { enum: ["models-dir", "job"] },
      jobId: { type: "string" },
      sizeBytes: { type: "integer" },
      modifiedAt: { type: "string", format: "date-time" },
      classes: { type: "array", items: { type: "string" } },
      error: { type: "string" },
      meta: { type: "object" },
    },
  },
  PredictSummary: {
    type: "object",
    properties: {
      model: { type: "string" },
      classes: {
        type: "array",
        items: {
          type: "object",
          properties: {
            name: { type: "string" },
            voxels: { type: "integer" },
            volumeMl: { type: "number" },
          },
        },
      },
      shape: { type: "array", items: { type: "integer" }, minItems: 3, maxItems: 3 },
      spacingMm: { type: "array", items: { type: "number" }, minItems: 3, maxItems: 3 },
      seconds: { type: "number" },
    },
  },
  TrainRequest: {
    type: "object",
    required: ["dataset"],
    additionalProperties: false,
    properties: {
      dataset: { type: "string", description: "dataset folder under the data root" },
      name: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" },
      config: {
        type: "object",
        description: "training config overrides: nested as in a --config file, or dotted " +
          'fields and aliases ({"optimizer.lr": 3e-4, "epochs": 5}); they override the plan',
      },
      plan: {
        type: "string",
        description: "as `voxseg train --plan`: a plans.json (or the folder holding one) " +
          'under the data root, or "none" for the defaults and `config` only. Absent: the ' +
          "plans.json beside the dataset, else a new plan made into the job's run folder (what " +
          "`voxseg train --data` does); cases are preprocessed there when the plan needs it",
      },
      timeBudget: {
        type: ["string", "number"],
        description: 'as `--time-budget`: "15m", "1h30m", or seconds; planning, ' +
          "preprocessing and training end within it, counted from the job's start",
        examples: ["15m", 900],
      },
      network: {
        enum: ["unet3d", "plain"],
        description: "as `--network`: the isotropic U-Net (default) or nnU-Net's PlainConvUNet " +
          "with the planned per-axis strides and kernels",
      },
      fold: {
        type: "integer",
        minimum: 0,
        description: "as `--fold K`: train cross-validation fold K (splits.json beside the " +
          "plan, else the dataset's 5 folds). One job per fold; `all` is refused",
      },
      gpuMemory: {
        type: ["string", "integer"],
        description: 'as `--gpu-memory`: the GPU memory a new plan may use ("4GiB", or bytes)',
      },
    },
  },
  JobPlan: {
    type: "object",
    required: ["source"],
    description: "What planning chose for a training job, once it is done (and why); a " +
      "resumed job keeps it and never plans again",
    properties: {
      source: {
        enum: ["request", "dataset", "new", "none"],
        description: "the request's plan, plans.json beside the dataset, a new plan, or none " +
          '("plan": "none")',
      },
      path: { type: "string", description: "the plan file, relative to the data root" },
      reason: { type: "string" },
      network: { enum: ["unet3d", "plain"] },
      targetSpacingMm: { type: "array", items: { type: "number" }, minItems: 3, maxItems: 3 },
      normalisation: {
        type: "object",
        properties: {
          scheme: { type: "string" },
          window: { type: "array", items: { type: "number" }, minItems: 2, maxItems: 2 },
        },
      },
      channels: {
        type: "array",
        description: "each input channel's normalisation, in channel order (plans of several " +
          "channels only)",
        items: {
          type: "object",
          required: ["name", "scheme"],
          properties: {
            name: { type: "string" },
            scheme: { type: "string" },
            window: { type: "array", items: { type: "number" }, minItems: 2, maxItems: 2 },
          },
        },
      },
      preprocessed: {
        type: "string",
        description: "why the cases were resampled or mapped onto HU; absent when they were not",
      },
      patchSize: { type: "array", items: { type: "integer" }, minItems: 3, maxItems: 3 },
      batchSize: { type: "integer" },
      baseChannels: { type: "integer" },
      depth: { type: "integer" },
      epochs: { type: ["integer", "null"] },
      itersPerEpoch: { type: ["integer", "null"] },
      budget: {
        type: "object",
        description: "how the time budget sized the run",
        properties: {
          budgetSeconds: { type: "number" },
          msPerStep: { type: "number" },
          steps: { type: "integer" },
          estimatedSeconds: { type: "number" },
          reason: { type: "string" },
        },
      },
      fold: { type: "integer" },
      reasons: { type: "object", additionalProperties: { type: "string" } },
      notes: { type: "array", items: { type: "string" } },
    },
  },
  PredictRequest: {
    oneOf: [ref("FilePredictRequest"), ref("PacsPredictRequest")],
  },
  FilePredictRequest: {
    type: "object",
    required: ["model", "input", "output"],
    additionalProperties: false,
    properties: {
      model: { type: "string" },
      input: {
        oneOf: [
          { type: "string" },
          { type: "array", items: { type: "string" }, minItems: 1, maxItems: 64 },
        ],
        description: "under the data root: a NIfTI file, or a DICOM series — a folder of its " +
          "files, a .zip of them, or one multi-frame file. A model of several input channels " +
          "takes a list of 3D NIfTI files, one per channel in channel order, or one 4D NIfTI " +
          "whose 4th dimension is the channels (another count: 422 channel_count_mismatch)",
      },
      series: {
        type: "string",
        pattern: UID_PATTERN,
        maxLength: 64,
        description: "SeriesInstanceUID, when the DICOM input holds several series",
      },
      output: {
        type: "string",
        description: "under the data root: a label map (.nii, .nii.gz), or for a DICOM input " +
          "also a DICOM Segmentation (.dcm)",
      },
      ...predictOptions,
    },
  },
  PacsPredictRequest: {
    type: "object",
    required: ["model", "pacs", "study"],
    additionalProperties: false,
    description: "A study on a PACS the operator configured. Fields naming an address " +
      '(`url`, `pacsUrl`, …) or a "pacs" holding one are refused with 400 ' +
      "`pacs_address_refused`: endpoints are configured with `voxseg serve --pacs`.",
    properties: {
      model: { type: "string" },
      pacs: {
        type: "string",
        pattern: "^[a-z0-9_-]{1,32}$",
        description: "a configured PACS name (GET /v1/pacs); another → 400 unknown_pacs",
      },
      study: {
        type: "string",
        pattern: UID_PATTERN,
        maxLength: 64,
        description: "StudyInstanceUID",
      },
      series: {
        type: "string",
        pattern: UID_PATTERN,
        maxLength: 64,
        description: "SeriesInstanceUID; default: the pipeline picks one and says why",
      },
      store: {
        type: "boolean",
        description: "store the segmentation back to the PACS as a DICOM SEG (default false)",
      },
      output: {
        type: "string",
        description: "also write the result under the data root: .nii, .nii.gz or .dcm",
      },
      ...predictOptions,
    },
  },
  Pacs: {
    type: "object",
    required: ["name", "origin", "auth"],
    properties: {
      name: { type: "string" },
      origin: { type: "string", description: "scheme, host and port of the DICOMweb URL" },
      auth: { enum: ["bearer", "basic", "none"] },
    },
  },
  PurgeReport: {
    type: "object",
    required: ["id", "purged", "cancelled", "removed", "kept"],
    properties: {
      id: { type: "string" },
      purged: { const: true },
      cancelled: { type: "boolean", description: "it was queued and was cancelled first" },
      removed: {
        type: "object",
        properties: {
          outputs: { type: "integer", description: "files the job wrote under the data root" },
          pulledFiles: { type: "integer", description: "files pulled from a PACS" },
          runFiles: { type: "integer", description: "training run files (checkpoints…)" },
          record: { type: "boolean", description: "the job's record and events" },
        },
      },
      kept: {
        type: "array",
        description: "files the job wrote that were left in place (replaced since, or now " +
          "behind a symbolic link)",
        items: {
          type: "object",
          properties: {
            what: { const: "output" },
            reason: { enum: ["replaced", "moved", "not_a_file"] },
            message: { type: "string" },
          },
        },
      },
    },
  },
};

/** An error response of the route table. */
export const errorResponse = (description: string): ResponseSpec => ({
  description,
  schema: ref("Error"),
});

/** 503 from a full GPU or job queue, with Retry-After. */
export const queueFull: ResponseSpec = {
  description: "the queue is full or the server is shutting down; see Retry-After",
  schema: ref("Error"),
  headers: { "Retry-After": "seconds to wait before retrying" },
};
