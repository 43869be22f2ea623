/** GET /: a plain page listing jobs and models (a placeholder for the dashboard). */

import type { Job } from "../jobs/job.ts";
import type { ModelSummary } from "../models.ts";
import type { RouteSpec, ServerContext } from "./table.ts";

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function jobRow(j: Job): string {
  const progress = typeof j.progress?.fraction === "number"
    ? `${Math.round(j.progress.fraction * 100)} %`
    : "";
  const loss = typeof j.progress?.loss === "number" ? j.progress.loss.toFixed(4) : "";
  return `<tr><td><a href="/v1/jobs/${escapeHtml(j.id)}">${escapeHtml(j.id)}</a></td>` +
    `<td>${j.kind}</td><td>${escapeHtml(j.name)}</td><td>${j.state}</td><td>${progress}</td>` +
    `<td>${loss}</td><td>${escapeHtml(j.createdAt)}</td></tr>`;
}

function modelRow(m: ModelSummary): string {
  return `<tr><td><a href="/v1/models/${encodeURIComponent(m.name)}">${escapeHtml(m.name)}</a>` +
    `</td><td>${m.source}</td><td>${escapeHtml((m.classes ?? []).join(", "))}</td>` +
    `<td>${escapeHtml(m.error ?? "")}</td></tr>`;
}

export function dashboardRoutes(ctx: ServerContext): RouteSpec[] {
  return [{
    method: "GET",
    path: "/",
    tag: "dashboard",
    summary: "A page listing jobs and models",
    responses: { 200: { description: "HTML", types: ["text/html"] } },
    handler: async (c) => {
      // A model removed while listing is left out.
      const models = (await Promise.all(
        (await ctx.models.entries()).map((e) => ctx.models.summary(e).catch(() => undefined)),
      )).filter((m) => m !== undefined);
      const jobs = ctx.store.list().slice(0, 100);
      const gpu = ctx.gpu();
      const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>voxseg</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}</style></head>
<body><h1>voxseg ${escapeHtml(ctx.version)}</h1>
<p>GPU: ${escapeHtml(gpu ? gpu.description : ctx.gpuError() ?? "acquiring…")} · queue
${ctx.scheduler.queueDepth}/${ctx.scheduler.maxQueue} ·
<a href="/openapi.json">API</a> · <a href="/metrics">metrics</a></p>
<h2>Models</h2><table><tr><th>name</th><th>source</th><th>classes</th><th></th></tr>
${models.map(modelRow).join("\n")}</table>
<h2>Jobs</h2><table><tr><th>id</th><th>kind</th><th>name</th><th>state</th><th>progress</th>
<th>loss</th><th>created</th></tr>
${jobs.map(jobRow).join("\n")}</table></body></html>
`;
      return c.html(html);
    },
  }];
}
