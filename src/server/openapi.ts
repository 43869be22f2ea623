/** The OpenAPI 3.1 description of the route table: one entry per route, nothing by hand. */

import { schemas } from "./routes/schemas.ts";
import type { JsonSchema, RouteSpec } from "./routes/table.ts";

export interface OpenApiOptions {
  version: string;
  /** Which routes need the bearer token. */
  auth: "none" | "mutating" | "all";
  /** GET paths open without the token whatever `auth` says. */
  public?: readonly string[];
}

/** `/v1/jobs/:id` → `/v1/jobs/{id}`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]\w*)/g, "{$1}");
}

/** The OpenAPI document for `routes`. */
export function openApiDocument(routes: readonly RouteSpec[], options: OpenApiOptions) {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of routes) {
    const path = openApiPath(r.path);
    const open = r.method === "GET" && (options.public ?? []).includes(r.path);
    const secured = !open &&
      (options.auth === "all" || (options.auth === "mutating" && r.method !== "GET"));
    const parameters = [
      ...[...r.path.matchAll(/:([A-Za-z_]\w*)/g)].map((m) => ({
        name: m[1],
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...(r.query ?? []).map((q) => ({
        name: q.name,
        in: "query",
        description: q.description,
        schema: q.schema,
      })),
    ];
    const responses: Record<string, JsonSchema> = {};
    const all = { ...r.responses };
    if (secured) all[401] ??= { description: "missing or wrong bearer token" };
    if (r.body) all[413] ??= { description: "body over --max-body" };
    if (r.body) all[415] ??= { description: "wrong content type" };
    for (const [status, spec] of Object.entries(all)) {
      const ok = Number(status) < 400;
      const types = spec.types ?? ["application/json"];
      const schema = spec.schema ?? (ok ? undefined : { $ref: "#/components/schemas/Error" });
      responses[status] = {
        description: spec.description,
        ...(spec.headers
          ? {
            headers: Object.fromEntries(
              Object.entries(spec.headers).map(([h, d]) => [
                h,
                { description: d, schema: { type: "string" } },
              ]),
            ),
          }
          : {}),
        content: Object.fromEntries(
          types.map((t) => [t, schema && t.includes("json") ? { schema } : {}]),
        ),
      };
    }
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      operationId: operationId(r),
      summary: r.summary,
      ...(r.description ? { description: r.description } : {}),
      tags: [r.tag],
      ...(parameters.length ? { parameters } : {}),
      ...(r.body
        ? {
          requestBody: {
            required: true,
            description: r.body.description,
            content: Object.fromEntries(
              r.body.types.map((t) => [
                t.replace(/\*$/, ""),
                r.body!.schema ? { schema: r.body!.schema } : {},
              ]),
            ),
          },
        }
        : {}),
      responses,
      security: secured ? [{ bearer: [] }] : [],
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "voxseg",
      version: options.version,
      description: "3D U-Net segmentation on WebGPU: synchronous prediction, training and " +
        'prediction jobs. Errors are {"error": {"code", "message"}}.',
    },
    paths,
    components: {
      schemas,
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    },
  };
}

/** `GET /v1/jobs/:id/events` → `getV1JobsIdEvents`. */
function operationId(r: RouteSpec): string {
  const words = r.path.split(/[/:{}_.-]+/).filter(Boolean);
  return r.method.toLowerCase() +
    (words.map((w) => w[0].toUpperCase() + w.slice(1)).join("") || "Root");
}
