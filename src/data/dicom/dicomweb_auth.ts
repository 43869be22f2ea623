/**
 * Credentials for a DICOMweb server, from the environment (VOXSEG_DICOMWEB_TOKEN, or
 * VOXSEG_DICOMWEB_USER and VOXSEG_DICOMWEB_PASSWORD), and the Authorization header they make.
 * A secret never reaches a message: whoever builds a header keeps the list of secrets to scrub.
 */

/** Credentials for a DICOMweb server: a bearer token or a user and password (HTTP Basic). */
export type DicomWebAuth =
  | { kind: "bearer"; token: string }
  | { kind: "basic"; user: string; password: string };

/** Where {@link dicomWebAuthFromEnv} reads variables: `Deno.env` or a plain record. */
export type EnvSource =
  | { get(name: string): string | undefined }
  | Record<string, string | undefined>;

/**
 * Credentials from the environment: `VOXSEG_DICOMWEB_TOKEN` (bearer), or
 * `VOXSEG_DICOMWEB_USER` with `VOXSEG_DICOMWEB_PASSWORD` (basic); undefined when none is set.
 * Setting both kinds, or only half of a user/password pair, is an error (it names the
 * variables, never their values).
 */
export function dicomWebAuthFromEnv(env: EnvSource = Deno.env): DicomWebAuth | undefined {
  const read = (name: string): string | undefined => {
    const value = typeof env.get === "function"
      ? (env as { get(name: string): string | undefined }).get(name)
      : (env as Record<string, string | undefined>)[name];
    return value === undefined || value === "" ? undefined : value;
  };
  const token = read("VOXSEG_DICOMWEB_TOKEN");
  const user = read("VOXSEG_DICOMWEB_USER");
  const password = read("VOXSEG_DICOMWEB_PASSWORD");
  if (token !== undefined && (user !== undefined || password !== undefined)) {
    throw new Error(
      "both VOXSEG_DICOMWEB_TOKEN and VOXSEG_DICOMWEB_USER/VOXSEG_DICOMWEB_PASSWORD are set: " +
        "unset one kind of DICOMweb credentials",
    );
  }
  if (token !== undefined) return { kind: "bearer", token };
  if (user === undefined && password === undefined) return undefined;
  if (user === undefined || password === undefined) {
    const missing = user === undefined ? "VOXSEG_DICOMWEB_USER" : "VOXSEG_DICOMWEB_PASSWORD";
    throw new Error(
      `${missing} is not set: DICOMweb basic authentication needs both user and password`,
    );
  }
  return { kind: "basic", user, password };
}

/**
 * The Authorization header for `auth`; pushes the secrets it carries onto `secrets` so that
 * messages can be scrubbed of them.
 */
export function authorizationHeader(auth: DicomWebAuth, secrets: string[]): string {
  if (auth.kind === "bearer") {
    // Checked here so that Headers never sees (and never echoes) a malformed token.
    if (!/^[\x21-\x7e]+$/.test(auth.token)) {
      throw new Error(
        "the DICOMweb bearer token holds spaces or non-ASCII characters; check VOXSEG_DICOMWEB_TOKEN",
      );
    }
    secrets.push(auth.token);
    return `Bearer ${auth.token}`;
  }
  const bytes = new TextEncoder().encode(`${auth.user}:${auth.password}`);
  const encoded = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
  secrets.push(auth.password, encoded);
  return `Basic ${encoded}`;
}
