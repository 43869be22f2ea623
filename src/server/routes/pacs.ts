/** The PACS endpoints a prediction job may name: names and origins, never credentials. */

import type { ServerContext } from "../context.ts";
import { ref } from "./schemas.ts";
import type { RouteSpec } from "./table.ts";

export function pacsRoutes(ctx: ServerContext): RouteSpec[] {
  return [
    {
      method: "GET",
      path: "/v1/pacs",
      tag: "pacs",
      summary: "The PACS endpoints configured with `voxseg serve --pacs NAME=URL`",
      description: "Name one as `pacs` in POST /v1/jobs/predict. Each shows its origin " +
        "(scheme, host, port) and the kind of credential the server uses (bearer, basic or " +
        "none), never the credential, the URL's path or a way to add an endpoint: only the " +
        "operator configures them.",
      responses: {
        200: {
          description: "the configured endpoints, in the order given",
          schema: {
            type: "object",
            properties: { pacs: { type: "array", items: ref("Pacs") } },
          },
        },
      },
      handler: (c) => c.json({ pacs: ctx.pacsEndpoints.list() }),
    },
  ];
}
