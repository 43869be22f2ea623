/**
 * The route table's types: each route is declared once — method, path, what it takes and
 * answers, its handler — and that one declaration registers it in Hono, gates its request
 * body's content type, and describes it in /openapi.json.
 */

import type { Handler } from "hono";

/** A JSON Schema fragment, as OpenAPI 3.1 embeds it. */
export type JsonSchema = Record<string, unknown>;

export interface ResponseSpec {
  description: string;
  /** Media types of the body; default application/json for 2xx, the error body otherwise. */
  types?: readonly string[];
  schema?: JsonSchema;
  headers?: Record<string, string>;
}

export interface RouteSpec {
  method: "GET" | "POST" | "DELETE";
  /** Hono syntax (`/v1/jobs/:id`); OpenAPI gets `{id}`. */
  path: string;
  summary: string;
  description?: string;
  tag: "health" | "models" | "jobs" | "pacs" | "dashboard";
  /**
   * Request body: the content types accepted (others → 415) and its size limit (default
   * JSON_BODY_LIMIT, 1 MiB; larger → 413).
   */
  body?: { types: readonly string[]; description: string; schema?: JsonSchema; maxBytes?: number };
  query?: { name: string; description: string; schema: JsonSchema }[];
  responses: Record<number, ResponseSpec>;
  handler: Handler;
}
