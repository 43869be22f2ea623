/**
 * A DICOMweb client over `fetch`: QIDO-RS search, WADO-RS retrieve and STOW-RS store, as a
 * PACS (Orthanc, dcm4chee, Google Healthcare, …) serves them under one base URL such as
 * `http://127.0.0.1:8042/dicom-web`.
 *
 * Credentials never reach a message: errors name the request's origin and path only (no
 * userinfo, no query — a QIDO query can hold a PatientID), text from lower layers is scrubbed of
 * URLs and secrets, and a redirect to another origin is not followed while credentials are set.
 * Every request has a timeout that covers reading the body, and bodies are read under a size
 * limit, so a slow or hostile server costs bounded time and memory.
 */

import {
  BodyTooLargeError,
  buildMultipart,
  DEFAULT_MAX_MULTIPART_BYTES,
  DEFAULT_MAX_MULTIPART_PARTS,
  multipartBoundary,
  parseMediaType,
  parseMultipart,
  readBodyLimited,
} from "./multipart.ts";
import { authorizationHeader, type DicomWebAuth } from "./dicomweb_auth.ts";
import type { DicomJsonDataset } from "./dicom_json.ts";
import { stowFailure, type StowResult, stowResult } from "./stow.ts";

/** What went wrong with a DICOMweb request, for callers that branch on it. */
export type DicomWebErrorKind =
  | "unauthorized"
  | "forbidden"
  | "not-found"
  | "server"
  | "status"
  | "timeout"
  | "aborted"
  | "network"
  | "redirect"
  | "protocol"
  | "too-large"
  | "store-failed";

/** A failed DICOMweb request. `url` is the request's origin and path, without query or userinfo. */
export class DicomWebError extends Error {
  constructor(
    message: string,
    readonly kind: DicomWebErrorKind,
    readonly url: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "DicomWebError";
  }
}

/** A STOW-RS request that did not store every instance; `result` says which were stored. */
export class StowError extends DicomWebError {
  constructor(message: string, url: string, status: number, readonly result: StowResult) {
    super(message, "store-failed", url, status);
    this.name = "StowError";
  }
}

/** Options of a {@link DicomWebClient}. */
export interface DicomWebClientOptions {
  /** Credentials; default none (see {@link dicomWebAuthFromEnv}). */
  auth?: DicomWebAuth;
  /** Per request, body included; default 120 000 ms. */
  timeoutMs?: number;
  /** Most bytes one response may have; default 1 GiB. */
  maxResponseBytes?: number;
  /** Most instances one WADO-RS response may hold; default 100 000. */
  maxParts?: number;
  /** Cancels every request of this client. */
  signal?: AbortSignal;
  /** The fetch to use; default the global one. */
  fetch?: typeof fetch;
}

/**
 * QIDO-RS query parameters: attribute keywords or tags (`PatientID`, `0020000D`), `limit`,
 * `offset`, `fuzzymatching`, `includefield` (an array sends the parameter once per value).
 */
export type QidoQuery = Record<string, string | number | boolean | readonly string[] | undefined>;

const DICOM_JSON = "application/dicom+json";
/** `transfer-syntax=*`: the PACS may send each instance as stored, compressed or not. */
const WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';
const MAX_REDIRECTS = 5;
const UID = /^[0-9]+(\.[0-9]+)*$/;

/**
 * A DICOMweb client for one server.
 *
 * @example
 * const auth = dicomWebAuthFromEnv(); // dicomweb_auth.ts
 * const pacs = new DicomWebClient("http://127.0.0.1:8042/dicom-web", { auth });
 * const [study] = await pacs.searchStudies({ AccessionNumber: "A123" });
 * const series = await pacs.searchSeries(jsonString(study, "0020000D")!);
 */
export class DicomWebClient {
  /** The base URL as messages show it: origin and path, no credentials or query. */
  readonly baseUrl: string;
  #base: URL;
  #authorization?: string;
  #secrets: string[] = [];
  #timeoutMs: number;
  #maxBytes: number;
  #maxParts: number;
  #signal?: AbortSignal;
  #fetch: typeof fetch;

  constructor(baseUrl: string | URL, options: DicomWebClientOptions = {}) {
    let base: URL;
    try {
      base = new URL(baseUrl);
    } catch {
      throw new Error(
        "DICOMweb base URL is not a URL: expected e.g. http://127.0.0.1:8042/dicom-web",
      );
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new Error(`DICOMweb base URL must be http(s), not ${base.protocol}`);
    }
    let auth = options.auth;
    // fetch refuses URLs with userinfo; take it as basic credentials unless others are given.
    if (base.username || base.password) {
      auth ??= {
        kind: "basic",
        user: decodeURIComponent(base.username),
        password: decodeURIComponent(base.password),
      };
      if (base.password) this.#secrets.push(decodeURIComponent(base.password), base.password);
      base.username = "";
      base.password = "";
    }
    if (base.search || base.hash) {
      throw new Error(
        `DICOMweb base URL ${base.origin}${base.pathname} carries a query or fragment: ` +
          "give the DICOMweb root only, and credentials through VOXSEG_DICOMWEB_TOKEN or user/password",
      );
    }
    base.pathname = base.pathname.replace(/\/+$/, "");
    this.#base = base;
    this.baseUrl = `${base.origin}${base.pathname}`;
    if (auth) this.#authorization = authorizationHeader(auth, this.#secrets);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_MULTIPART_BYTES;
    this.#maxParts = options.maxParts ?? DEFAULT_MAX_MULTIPART_PARTS;
    this.#signal = options.signal;
    this.#fetch = options.fetch ?? fetch;
  }

  /** QIDO-RS: studies matching `query` (e.g. `{ PatientID: "X", StudyDate: "20240101-" }`). */
  async searchStudies(query: QidoQuery = {}): Promise<DicomJsonDataset[]> {
    return await this.#json("/studies", query, "");
  }

  /** QIDO-RS: the series of one study, optionally filtered (`{ Modality: "CT" }`). */
  async searchSeries(studyUid: string, query: QidoQuery = {}): Promise<DicomJsonDataset[]> {
    return await this.#json(`/studies/${uid(studyUid, "study")}/series`, query, "");
  }

  /** QIDO-RS: the instances of one series. */
  async searchInstances(
    studyUid: string,
    seriesUid: string,
    query: QidoQuery = {},
  ): Promise<DicomJsonDataset[]> {
    const path = `/studies/${uid(studyUid, "study")}/series/${uid(seriesUid, "series")}/instances`;
    return await this.#json(path, query, "");
  }

  /**
   * WADO-RS: every instance of a series as DICOM Part 10 bytes, in whatever transfer syntax
   * the server stores them. Each array owns its buffer.
   */
  async retrieveSeries(studyUid: string, seriesUid: string): Promise<Uint8Array[]> {
    const path = `/studies/${uid(studyUid, "study")}/series/${uid(seriesUid, "series")}`;
    return await this.#request("GET", path, { accept: WADO_ACCEPT }, async (response, shown) => {
      if (response.status !== 200) {
        await response.body?.cancel();
        throw statusError(
          response.status,
          shown,
          !!this.#authorization,
          seriesNotFound(studyUid, seriesUid),
        );
      }
      const contentType = response.headers.get("content-type") ?? "";
      const media = parseMediaType(contentType);
      if (media.type !== "multipart/related") {
        await response.body?.cancel();
        throw notDicomWeb(shown, media.type, "multipart/related DICOM instances");
      }
      if (media.params.type && media.params.type.toLowerCase() !== "application/dicom") {
        await response.body?.cancel();
        throw new DicomWebError(
          `${shown} sent multipart parts of type ${media.params.type}, not application/dicom`,
          "protocol",
          shown,
          200,
        );
      }
      const body = await this.#readBody(response, shown);
      let parts;
      try {
        parts = parseMultipart(body, multipartBoundary(contentType), {
          maxTotalBytes: this.#maxBytes,
          maxParts: this.#maxParts,
        });
      } catch (e) {
        throw new DicomWebError(`${shown}: ${(e as Error).message}`, "protocol", shown, 200);
      }
      return parts.map((part, i) => {
        const type = parseMediaType(part.headers.get("content-type") ?? "application/dicom").type;
        if (type !== "application/dicom" || !isPart10(part.body)) {
          throw new DicomWebError(
            `${shown}: part ${i + 1} of ${parts.length} is ${
              type === "application/dicom"
                ? "not a DICOM Part 10 file (no DICM at byte 128)"
                : `of type ${type}`
            }`,
            "protocol",
            shown,
            200,
          );
        }
        // A copy per instance: callers hand `.buffer` to DICOM readers, and a view would
        // hand them the whole multipart body.
        return part.body.slice();
      });
    });
  }

  /** WADO-RS: the metadata (DICOM JSON, bulk data by reference) of every instance of a series. */
  async retrieveSeriesMetadata(studyUid: string, seriesUid: string): Promise<DicomJsonDataset[]> {
    const path = `/studies/${uid(studyUid, "study")}/series/${uid(seriesUid, "series")}/metadata`;
    return await this.#json(path, undefined, seriesNotFound(studyUid, seriesUid));
  }

  /**
   * STOW-RS: stores DICOM Part 10 instances, into the study `studyUid` when given (the server
   * then refuses instances of other studies). Resolves when every instance was stored; throws
   * a {@link StowError} naming each failure's reason code otherwise.
   */
  async store(studyUid: string | undefined, instances: Uint8Array[]): Promise<StowResult> {
    if (instances.length === 0) throw new Error("STOW-RS: no instances to store");
    instances.forEach((bytes, i) => {
      if (!isPart10(bytes)) {
        throw new Error(
          `STOW-RS: instance ${i + 1} is not a DICOM Part 10 file (no DICM at byte 128)`,
        );
      }
    });
    const path = studyUid === undefined ? "/studies" : `/studies/${uid(studyUid, "study")}`;
    const { body, contentType } = buildMultipart(
      instances.map((bytes) => ({ contentType: "application/dicom", body: bytes })),
      "application/dicom",
    );
    const headers = { accept: DICOM_JSON, "content-type": contentType };
    return await this.#request("POST", path, headers, async (response, shown) => {
      const status = response.status;
      if (status === 401 || status === 403 || status === 404 || status >= 500) {
        await response.body?.cancel();
        throw statusError(
          status,
          shown,
          !!this.#authorization,
          "the server has no STOW-RS service at this path",
        );
      }
      // Orthanc answers a failed store with 400 and DICOM JSON but no Content-Type, so the
      // body is read as JSON whatever the header says.
      const text = new TextDecoder().decode(await this.#readBody(response, shown));
      let dataset: DicomJsonDataset | undefined;
      try {
        const parsed = text ? JSON.parse(text) : undefined;
        if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) dataset = parsed;
      } catch { /* handled below */ }
      if (!dataset) {
        if (status >= 300) throw statusError(status, shown, !!this.#authorization, "");
        throw notDicomWeb(
          shown,
          response.headers.get("content-type") ?? "a non-JSON body",
          "a DICOM JSON store response",
        );
      }
      const result = stowResult(dataset);
      if (status >= 300 || result.failed.length > 0 || result.stored.length < instances.length) {
        throw new StowError(
          stowFailure(shown, status, instances.length, result),
          shown,
          status,
          result,
        );
      }
      return result;
    }, body);
  }

  /** GET a DICOM JSON array; 204 No Content is an empty result. */
  async #json(
    path: string,
    query: QidoQuery | undefined,
    notFound: string,
  ): Promise<DicomJsonDataset[]> {
    return await this.#request(
      "GET",
      path,
      { accept: DICOM_JSON },
      async (response, shown) => {
        if (response.status === 204) return [];
        if (response.status !== 200) {
          await response.body?.cancel();
          throw statusError(response.status, shown, !!this.#authorization, notFound);
        }
        const type = parseMediaType(response.headers.get("content-type") ?? "").type;
        if (type && type !== DICOM_JSON && type !== "application/json") {
          await response.body?.cancel();
          throw notDicomWeb(shown, type, "DICOM JSON");
        }
        const text = new TextDecoder().decode(await this.#readBody(response, shown));
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          throw notDicomWeb(shown, type || "a body", "DICOM JSON (it does not parse as JSON)");
        }
        if (
          !Array.isArray(parsed) ||
          parsed.some((d) => !d || typeof d !== "object" || Array.isArray(d))
        ) {
          throw notDicomWeb(shown, "JSON", "an array of DICOM JSON datasets");
        }
        return parsed as DicomJsonDataset[];
      },
      undefined,
      query,
    );
  }

  async #readBody(response: Response, shown: string): Promise<Uint8Array> {
    try {
      return await readBodyLimited(response, this.#maxBytes);
    } catch (e) {
      if (e instanceof BodyTooLargeError) {
        throw new DicomWebError(`${shown}: ${e.message}`, "too-large", shown, response.status);
      }
      throw e;
    }
  }

  /**
   * Sends one request (following same-origin redirects) and hands the response to `handle`,
   * all under one timeout; maps failures to {@link DicomWebError}s with scrubbed messages.
   */
  async #request<T>(
    method: "GET" | "POST",
    path: string,
    headers: Record<string, string>,
    handle: (response: Response, shown: string) => Promise<T>,
    body?: Uint8Array,
    query?: QidoQuery,
  ): Promise<T> {
    let url = new URL(this.#base.href);
    url.pathname = `${this.#base.pathname}${path}`;
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) {
        url.searchParams.append(name, String(v));
      }
    }
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = this.#signal ? AbortSignal.any([timeout, this.#signal]) : timeout;
    let shown = show(url);
    try {
      for (let hop = 0;; hop++) {
        const sameOrigin = url.origin === this.#base.origin;
        const requestHeaders = new Headers(headers);
        if (this.#authorization && sameOrigin) {
          requestHeaders.set("authorization", this.#authorization);
        }
        const response = await this.#fetch(url, {
          method,
          headers: requestHeaders,
          body: body as BodyInit | undefined,
          redirect: "manual",
          signal,
        });
        const location = response.headers.get("location");
        if (response.status < 300 || response.status >= 400 || !location) {
          return await handle(response, shown);
        }
        await response.body?.cancel();
        const next = new URL(location, url);
        if (hop + 1 > MAX_REDIRECTS) {
          throw new DicomWebError(
            `${shown}: more than ${MAX_REDIRECTS} redirects`,
            "redirect",
            shown,
            response.status,
          );
        }
        if (method === "POST" && response.status !== 307 && response.status !== 308) {
          throw new DicomWebError(
            `${shown} redirected a STOW-RS POST (${response.status}) to ${
              show(next)
            }: use that URL as the base URL`,
            "redirect",
            shown,
            response.status,
          );
        }
        if (next.origin !== this.#base.origin && this.#authorization) {
          throw new DicomWebError(
            `${shown} redirected to another origin, ${next.origin}; not followed, so the credentials ` +
              `stay with ${this.#base.origin}. If you trust it, use ${show(next)} as the base URL`,
            "redirect",
            shown,
            response.status,
          );
        }
        url = next;
        shown = show(url);
      }
    } catch (e) {
      if (e instanceof DicomWebError) throw e;
      if (timeout.aborted) {
        throw new DicomWebError(
          `${shown} did not answer within ${
            this.#timeoutMs / 1000
          } s: check the server, or raise timeoutMs`,
          "timeout",
          shown,
        );
      }
      if (this.#signal?.aborted) {
        throw new DicomWebError(`${shown}: request cancelled`, "aborted", shown);
      }
      const reason = this.#scrub(e instanceof Error ? e.message : String(e));
      if (e instanceof TypeError) {
        throw new DicomWebError(
          `connection to the DICOMweb server at ${shown} failed: ${reason}`,
          "network",
          shown,
        );
      }
      throw new DicomWebError(`${shown}: ${reason}`, "protocol", shown);
    }
  }

  /** Text from lower layers with URLs cut to origin and path and every secret masked. */
  #scrub(text: string): string {
    let out = text.replace(/https?:\/\/[^\s)"'<>]+/g, (match) => {
      try {
        return show(new URL(match));
      } catch {
        return "(url)";
      }
    });
    for (const secret of this.#secrets) if (secret) out = out.split(secret).join("***");
    return out;
  }
}

/** Origin and path: what a message may show of a URL. */
function show(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function uid(value: string, what: string): string {
  if (typeof value !== "string" || value.length > 64 || !UID.test(value)) {
    throw new Error(
      `the ${what} UID given is not a DICOM UID (digits and dots, at most 64 characters)`,
    );
  }
  return value;
}

/** Whether bytes are a DICOM Part 10 file: a 128-byte preamble, then "DICM". */
function isPart10(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 &&
    bytes[131] === 0x4d;
}

function seriesNotFound(studyUid: string, seriesUid: string): string {
  return `the server has no series ${seriesUid} in study ${studyUid}; ` +
    "searchSeries(studyUid) lists the study's series";
}

/** An error for an HTTP status that is not a success, saying what to do about it. */
function statusError(
  status: number,
  shown: string,
  sentCredentials: boolean,
  notFound: string,
): DicomWebError {
  if (status === 401) {
    const fix = sentCredentials
      ? "the credentials were rejected: check VOXSEG_DICOMWEB_TOKEN, or VOXSEG_DICOMWEB_USER and VOXSEG_DICOMWEB_PASSWORD"
      : "the server needs credentials: set VOXSEG_DICOMWEB_TOKEN, or VOXSEG_DICOMWEB_USER and VOXSEG_DICOMWEB_PASSWORD";
    return new DicomWebError(`${shown}: 401 Unauthorized: ${fix}`, "unauthorized", shown, status);
  }
  if (status === 403) {
    return new DicomWebError(
      `${shown}: 403 Forbidden: the credentials are valid but may not access this resource; ask the PACS administrator`,
      "forbidden",
      shown,
      status,
    );
  }
  if (status === 404) {
    const why = notFound ||
      "no DICOMweb service answers there: check the base URL (Orthanc's is http://host:8042/dicom-web)";
    return new DicomWebError(`${shown}: 404 Not Found: ${why}`, "not-found", shown, status);
  }
  if (status >= 500) {
    return new DicomWebError(
      `${shown}: the server failed (HTTP ${status}); try again later or read the PACS's log`,
      "server",
      shown,
      status,
    );
  }
  return new DicomWebError(`${shown}: unexpected HTTP status ${status}`, "status", shown, status);
}

function notDicomWeb(shown: string, got: string, wanted: string): DicomWebError {
  return new DicomWebError(
    `${shown} answered ${got}, not ${wanted}: is ${shown} on a DICOMweb server (the base URL its DICOMweb root)?`,
    "protocol",
    shown,
  );
}
