/**
 * What each segmentation class is, as a coded concept: the SegmentedPropertyCategory and
 * SegmentedPropertyType a DICOM Segmentation states for a segment. The dataset manifest may
 * give them (`classCodes` in dataset.json), the trainer copies them into the checkpoint, and
 * inference writes them into the Segmentation. It lives here, below the checkpoint format
 * (src/nn) and the data column, because both carry it and neither may use the other.
 */

/** A code from a coding scheme (DICOM's Code Sequence Macro). */
export interface CodedConcept {
  /** CodeValue (0008,0100). */
  value: string;
  /** CodingSchemeDesignator (0008,0102), e.g. "SCT", "DCM". */
  scheme: string;
  /** CodeMeaning (0008,0104). */
  meaning: string;
}

/** A class's coded meaning: its category (e.g. anatomical structure) and its type (lung). */
export interface ClassCode {
  category: CodedConcept;
  type: CodedConcept;
}

/** Class name → its coded meaning; classes not listed get a known or generic code. */
export type ClassCodes = Record<string, ClassCode>;

/**
 * Checks an untrusted `classCodes` value (from dataset.json or checkpoint metadata) against
 * the class names; throws naming the bad entry and the expected shape.
 */
export function parseClassCodes(value: unknown, classNames: readonly string[]): ClassCodes {
  const shape = '{"lung": {"category": {"value", "scheme", "meaning"}, "type": {…}}}';
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`classCodes must be an object of class name → codes, e.g. ${shape}`);
  }
  const out: ClassCodes = {};
  for (const [name, entry] of Object.entries(value)) {
    if (!classNames.includes(name)) {
      throw new Error(
        `classCodes names "${name}", which is not a class (${classNames.join(", ")})`,
      );
    }
    const e = entry as Record<string, unknown>;
    out[name] = {
      category: concept(e?.category, `classCodes.${name}.category`),
      type: concept(e?.type, `classCodes.${name}.type`),
    };
  }
  return out;
}

function concept(value: unknown, path: string): CodedConcept {
  const v = value as Record<string, unknown>;
  const field = (k: string, max: number) => {
    const s = v?.[k];
    if (typeof s !== "string" || s.trim() === "" || s.length > max || /[\\\r\n]/.test(s)) {
      throw new Error(
        `${path}.${k} must be a non-empty string of at most ${max} characters without ` +
          `backslashes or line breaks, got ${JSON.stringify(s)}`,
      );
    }
    return s;
  };
  // DICOM limits: CodeValue SH (16), CodingSchemeDesignator SH (16), CodeMeaning LO (64).
  return { value: field("value", 16), scheme: field("scheme", 16), meaning: field("meaning", 64) };
}
