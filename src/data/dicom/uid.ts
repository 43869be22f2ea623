/**
 * DICOM UIDs for the objects voxseg creates (a Segmentation's series and instance, its
 * dimension organisation). Without an organisation root of its own, voxseg uses the form the
 * standard gives for UUID-derived UIDs (PS3.5 §B.2): `2.25.` followed by the decimal value of
 * a random (version 4) UUID — 128 bits, so collisions need no registry to be negligible.
 */

/** A new UID `2.25.<decimal of a random UUID>`, at most 44 characters (UI allows 64). */
export function newUid(): string {
  const hex = crypto.randomUUID().replaceAll("-", "");
  // BigInt prints the 128-bit value in decimal without a leading zero, as UIDs require.
  return `2.25.${BigInt(`0x${hex}`).toString(10)}`;
}

/**
 * Whether `uid` is a valid UID: at most 64 characters, dot-separated numeric components, no
 * component empty or with a leading zero (PS3.5 §9.1).
 */
export function isUid(uid: string): boolean {
  return uid.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid);
}
