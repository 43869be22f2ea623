/**
 * The PACS endpoints the operator configures (`voxseg serve --pacs NAME=URL`): the only
 * DICOMweb servers a job may pull studies from or store results to. Clients name an endpoint,
 * never an address, so the API cannot be made to fetch arbitrary URLs.
 *
 * Credentials come from the server's environment, never from a flag or a request:
 * `VOXSEG_PACS_<NAME>_TOKEN` (bearer) or `VOXSEG_PACS_<NAME>_USER` and `..._PASSWORD` (basic),
 * NAME upper-cased with `-` as `_`, else the shared `VOXSEG_DICOMWEB_TOKEN` /
 * `VOXSEG_DICOMWEB_USER` / `VOXSEG_DICOMWEB_PASSWORD`. They are kept out of every log line
 * and answer: an endpoint's JSON form and its `Deno.inspect` form show only its name, origin
 * and the kind of credential.
 */

/** How the server authenticates to a PACS. */
export type PacsAuth =
  | { kind: "none" }
  | { kind: "bearer"; token: string }
  | { kind: "basic"; user: string; password: string };

/** A configured DICOMweb endpoint. */
export interface PacsEndpoint {
  /** What clients call it: `[a-z0-9_-]{1,32}`. */
  readonly name: string;
  /** The DICOMweb base URL (http or https, no user, password, query or fragment). */
  readonly url: string;
  readonly auth: PacsAuth;
}

/** What a client sees of an endpoint: never its credentials nor its URL's path. */
export interface PacsListing {
  name: string;
  /** Scheme, host and port. */
  origin: string;
  auth: PacsAuth["kind"];
}

export const PACS_NAME = /^[a-z0-9_-]{1,32}$/;

/** The environment the credentials are read from: `Deno.env.get` by default. */
export type EnvLookup = (name: string) => string | undefined;

/** A --pacs value or its credentials are unusable; the message names the fix, never a secret. */
export class PacsConfigError extends Error {
  override name = "PacsConfigError";
}

/** `VOXSEG_PACS_<NAME>_` for a PACS name: upper case, `-` as `_`. */
export function pacsEnvPrefix(name: string): string {
  return `VOXSEG_PACS_${name.toUpperCase().replaceAll("-", "_")}_`;
}

/**
 * Reads `--pacs` values (`NAME=URL`) and their credentials; throws {@link PacsConfigError}.
 *
 * @example
 * const endpoints = parsePacsFlags(["main=https://pacs.example/dicom-web"]);
 */
export function parsePacsFlags(
  specs: readonly string[],
  env: EnvLookup = (n) => Deno.env.get(n),
): PacsEndpoint[] {
  const endpoints: PacsEndpoint[] = [];
  const prefixes = new Map<string, string>();
  for (const spec of specs) {
    const at = spec.indexOf("=");
    const name = at < 0 ? spec : spec.slice(0, at);
    if (at < 0 || !PACS_NAME.test(name)) {
      throw new PacsConfigError(
        `--pacs takes NAME=URL with NAME 1–32 of a-z, 0-9, "_", "-" (e.g. ` +
          `--pacs main=https://pacs.example/dicom-web), got ${JSON.stringify(shown(spec))}`,
      );
    }
    // Two names that differ only by "-" and "_" would read the same credentials.
    const prefix = pacsEnvPrefix(name);
    const clash = prefixes.get(prefix);
    if (clash !== undefined) {
      throw new PacsConfigError(
        clash === name
          ? `--pacs ${name} is given twice; name each PACS once`
          : `--pacs ${clash} and ${name} share the credential variables ${prefix}*; rename one`,
      );
    }
    prefixes.set(prefix, name);
    const url = checkPacsUrl(name, spec.slice(at + 1));
    endpoints.push(hideSecrets({ name, url, auth: pacsAuth(name, env) }));
  }
  return endpoints;
}

/** `value` as a DICOMweb base URL; the message never repeats a user or password it holds. */
function checkPacsUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new PacsConfigError(
      `--pacs ${name}: the URL is not valid; give the DICOMweb base URL, e.g. ` +
        "https://pacs.example/dicom-web",
    );
  }
  if (url.username || url.password) {
    throw new PacsConfigError(
      `--pacs ${name}: the URL holds a user or password, which would show in process lists; ` +
        `remove it and set ${pacsEnvPrefix(name)}TOKEN, or ${pacsEnvPrefix(name)}USER and ` +
        `${pacsEnvPrefix(name)}PASSWORD, in the server's environment`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new PacsConfigError(
      `--pacs ${name}: the URL must be http or https, got ${url.protocol.replace(/:$/, "")}`,
    );
  }
  if (url.search || url.hash) {
    // A query string is where API keys hide; a DICOMweb base URL needs none.
    throw new PacsConfigError(
      `--pacs ${name}: the URL must have no query string or fragment; credentials go in ` +
        `${pacsEnvPrefix(name)}TOKEN (or _USER and _PASSWORD)`,
    );
  }
  return url.href.replace(/\/+$/, "");
}

/** The credentials of `name`: its own variables, else the shared VOXSEG_DICOMWEB_* ones. */
function pacsAuth(name: string, env: EnvLookup): PacsAuth {
  const own = pacsEnvPrefix(name);
  const read = (prefix: string) => ({
    prefix,
    token: env(`${prefix}TOKEN`) || undefined,
    user: env(`${prefix}USER`) || undefined,
    password: env(`${prefix}PASSWORD`) || undefined,
  });
  const mine = read(own);
  const set = mine.token || mine.user || mine.password ? mine : read("VOXSEG_DICOMWEB_");
  const { prefix, token, user, password } = set;
  if (token && (user || password)) {
    throw new PacsConfigError(
      `PACS ${name}: both ${prefix}TOKEN and ${prefix}USER/PASSWORD are set; set one kind`,
    );
  }
  if (token) {
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new PacsConfigError(
        `PACS ${name}: ${prefix}TOKEN holds spaces, a line break or non-ASCII characters, ` +
          "which no Authorization header can carry",
      );
    }
    return { kind: "bearer", token };
  }
  if (user || password) {
    if (!user || !password) {
      throw new PacsConfigError(
        `PACS ${name}: ${prefix}USER and ${prefix}PASSWORD go together; set both`,
      );
    }
    if (user.includes(":") || /[\r\n]/.test(user + password)) {
      throw new PacsConfigError(
        `PACS ${name}: ${prefix}USER may not hold ":" and neither may hold a line break`,
      );
    }
    return { kind: "basic", user, password };
  }
  return { kind: "none" };
}

/** `spec` up to its URL's user info, for messages. */
function shown(spec: string): string {
  return spec.replace(/\/\/[^/@]*@/, "//…@").slice(0, 100);
}

/** The credential-free form of an endpoint: for JSON, inspection and the API. */
export function pacsListing(endpoint: PacsEndpoint): PacsListing {
  return { name: endpoint.name, origin: new URL(endpoint.url).origin, auth: endpoint.auth.kind };
}

/**
 * `endpoint` frozen, with `toJSON` and Deno's inspect hook showing only its listing: an
 * endpoint logged or serialised by mistake carries no secret.
 */
function hideSecrets(endpoint: PacsEndpoint): PacsEndpoint {
  const auth = { ...endpoint.auth };
  Object.defineProperties(auth, {
    toJSON: { value: () => ({ kind: auth.kind }) },
    [Symbol.for("Deno.customInspect")]: { value: () => `PacsAuth(${auth.kind})` },
  });
  const out = { name: endpoint.name, url: endpoint.url, auth: Object.freeze(auth) };
  Object.defineProperties(out, {
    toJSON: { value: () => pacsListing(out) },
    [Symbol.for("Deno.customInspect")]: {
      value: () => `PacsEndpoint(${JSON.stringify(pacsListing(out))})`,
    },
  });
  return Object.freeze(out);
}

/** The configured endpoints by name. */
export class PacsRegistry {
  readonly #byName: ReadonlyMap<string, PacsEndpoint>;

  constructor(endpoints: readonly PacsEndpoint[] = []) {
    this.#byName = new Map(endpoints.map((e) => [e.name, hideSecrets(e)]));
  }

  /** The endpoint called `name`, or undefined. */
  get(name: string): PacsEndpoint | undefined {
    return this.#byName.get(name);
  }

  /** The configured names, in the order given. */
  names(): string[] {
    return [...this.#byName.keys()];
  }

  /** What clients may see of each endpoint. */
  list(): PacsListing[] {
    return [...this.#byName.values()].map(pacsListing);
  }

  /** Every secret held (tokens, passwords): scrubbed from job error messages. */
  secrets(): string[] {
    const out: string[] = [];
    for (const { auth } of this.#byName.values()) {
      if (auth.kind === "bearer") out.push(auth.token);
      if (auth.kind === "basic") out.push(auth.password, btoa(`${auth.user}:${auth.password}`));
    }
    return out;
  }
}

/** `text` with every occurrence of `secrets` replaced by `<secret>`. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join("<secret>");
  return out;
}

/**
 * The message for a PACS name that is not configured: 400 `unknown_pacs` names the ones
 * that are, or how the operator adds one.
 */
export function unknownPacsMessage(name: string, names: readonly string[]): string {
  return `no PACS named ${JSON.stringify(name.slice(0, 40))} is configured; ` +
    (names.length
      ? `configured: ${names.join(", ")}`
      : "none is: the operator adds one with `voxseg serve --pacs NAME=URL`");
}
