/** JSON Schemas shared by the route table's OpenAPI descriptions. */

import { JOB_STATES } from "../jobs/job.ts";
import type { JsonSchema, ResponseSpec } from "./table.ts";

export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

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
      result: { type: "object" },
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
          'fields and aliases ({"optimizer.lr": 3e-4, "epochs": 5})',
      },
    },
  },
  PredictRequest: {
    type: "object",
    required: ["model", "input", "output"],
    additionalProperties: false,
    properties: {
      model: { type: "string" },
      input: { type: "string", description: "NIfTI file under the data root" },
      output: { type: "string", description: ".nii or .nii.gz path under the data root" },
      overlap: { type: "number", minimum: 0, maximum: 0.95 },
      tta: { type: "boolean" },
      precision: {
        type: "string",
        enum: ["f32", "f16"],
        description: "convolution operands in binary16 with f32 sums (f16), or f32 (default)",
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
