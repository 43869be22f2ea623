/// <reference lib="dom" />
/**
 * The dashboard's calls to the voxseg API. The bearer token is the one the user typed into
 * the page; it lives in sessionStorage (this tab only, gone when the tab closes) and is sent
 * on every request: with a token set, the server answers every data route only with it.
 */

import type { Job } from "../jobs/job.ts";
import type { ModelSummary } from "../models.ts";

const TOKEN_KEY = "voxseg.token";
/** Where the token lives when sessionStorage is disabled: until the page reloads. */
let memoryToken = "";

/** The token typed into the page, or "" when none. */
export function getToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return memoryToken;
  }
}

/** Keeps `token` for this tab (an empty string forgets it). */
export function setToken(token: string): void {
  memoryToken = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: memoryToken serves
  }
}

/** Headers carrying the bearer token, when there is one. */
export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** A failed API call: the HTTP status and the server's error code and message. */
export class ApiCallError extends Error {
  override name = "ApiCallError";
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** `fetch` with the token; non-2xx answers become {@link ApiCallError}s. */
export async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  for (const [k, v] of Object.entries(authHeaders())) headers.set(k, v);
  const res = await fetch(path, { ...init, headers, cache: "no-store" });
  if (res.ok) return res;
  const text = await res.text();
  let code = "http_error";
  let message = `HTTP ${res.status}`;
  try {
    const body = JSON.parse(text);
    if (typeof body?.error?.code === "string") code = body.error.code;
    if (typeof body?.error?.message === "string") message = body.error.message;
  } catch {
    if (text) message = `HTTP ${res.status}: ${text.slice(0, 200)}`;
  }
  throw new ApiCallError(res.status, code, message);
}

/** GET /v1/jobs: the newest `limit` jobs. */
export async function listJobs(limit = 50): Promise<Job[]> {
  const body = await (await call(`/v1/jobs?limit=${limit}`)).json();
  return body.jobs as Job[];
}

/** GET /v1/models. */
export async function listModels(): Promise<ModelSummary[]> {
  const body = await (await call("/v1/models")).json();
  return body.models as ModelSummary[];
}

/** GET /v1/jobs/{id}. */
export async function getJob(id: string): Promise<Job> {
  return await (await call(`/v1/jobs/${encodeURIComponent(id)}`)).json() as Job;
}

/** The bytes of a NIfTI file the server serves for the dashboard. */
export async function getBytes(path: string): Promise<ArrayBuffer> {
  return await (await call(path)).arrayBuffer();
}

/** True when `bytes` start with the gzip magic number. */
export function isGzip(bytes: ArrayBuffer): boolean {
  const b = new Uint8Array(bytes, 0, Math.min(2, bytes.byteLength));
  return b.length === 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** True when `bytes` start as a zip archive ("PK\x03\x04"). */
export function isZip(bytes: ArrayBuffer): boolean {
  const b = new Uint8Array(bytes, 0, Math.min(4, bytes.byteLength));
  return b.length === 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 3 && b[3] === 4;
}

/** The Content-Type of an upload: a zip of a DICOM series, gzipped NIfTI, or NIfTI. */
function uploadType(volume: ArrayBuffer): string {
  if (isZip(volume)) return "application/zip";
  return isGzip(volume) ? "application/gzip" : "application/octet-stream";
}

/**
 * Segments a NIfTI volume, or a zip of a DICOM series, with `model`; returns the label map's
 * bytes (NIfTI) and the seconds taken.
 */
export async function predict(
  model: string,
  volume: ArrayBuffer,
): Promise<{ labels: ArrayBuffer; seconds: number | undefined }> {
  const res = await call(`/v1/models/${encodeURIComponent(model)}/predict`, {
    method: "POST",
    body: volume,
    headers: { "content-type": uploadType(volume) },
  });
  const seconds = Number(res.headers.get("x-voxseg-seconds") ?? NaN);
  return {
    labels: await res.arrayBuffer(),
    seconds: Number.isFinite(seconds) ? seconds : undefined,
  };
}
