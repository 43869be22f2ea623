/**
 * The coded meaning of each segmentation class, as a DICOM Segmentation states it
 * (SegmentedPropertyCategoryCodeSequence and SegmentedPropertyTypeCodeSequence).
 *
 * Where a class has codes in the checkpoint's metadata (`classCodes`), those win. Otherwise a
 * table of the names voxseg segments gives real SNOMED CT codes (categories from CID 7150
 * "Segmentation Property Categories"):
 *
 * | class name (normalised)               | category                                   | type                       |
 * | ------------------------------------- | ------------------------------------------ | -------------------------- |
 * | lung, lungs                           | SCT 123037004 Anatomical Structure         | SCT 39607008 Lung          |
 * | left_lung, lung_left                  | SCT 123037004 Anatomical Structure         | SCT 44029006 Left lung     |
 * | right_lung, lung_right                | SCT 123037004 Anatomical Structure         | SCT 3341006 Right lung     |
 * | infection, lesion, covid, covid19, …  | SCT 49755003 Morphologically Abnormal Str. | SCT 52988006 Lesion        |
 *
 * An infection is segmented as a lesion, not as the disease: SCT 840539006 (COVID-19) is a
 * disorder, while a segment's type must be a structure that occupies voxels, and the
 * opacities a COVID-19 model outlines (ground glass, consolidation) are lesions (SCT 52988006,
 * which the baseline groups CID 3487 and 4266 also use). Any other class gets the generic pair
 * SCT 85756007 "Tissue" / SCT 85756007 "Tissue" (CID 7150 and CID 7151 both list it) and
 * keeps its own name as SegmentLabel, so a reader still sees what it is.
 */

import type { ClassCode, ClassCodes, CodedConcept } from "../../base/class_codes.ts";
import type { SegmentMeaning } from "./types.ts";

const ANATOMICAL_STRUCTURE: CodedConcept = {
  value: "123037004",
  scheme: "SCT",
  meaning: "Anatomical Structure",
};
const ABNORMAL_STRUCTURE: CodedConcept = {
  value: "49755003",
  scheme: "SCT",
  meaning: "Morphologically Abnormal Structure",
};
const TISSUE: CodedConcept = { value: "85756007", scheme: "SCT", meaning: "Tissue" };

/** The generic meaning of a class voxseg has no code for. */
export const GENERIC_CLASS_CODE: ClassCode = { category: TISSUE, type: TISSUE };

const LUNG: ClassCode = {
  category: ANATOMICAL_STRUCTURE,
  type: { value: "39607008", scheme: "SCT", meaning: "Lung" },
};
const LEFT_LUNG: ClassCode = {
  category: ANATOMICAL_STRUCTURE,
  type: { value: "44029006", scheme: "SCT", meaning: "Left lung" },
};
const RIGHT_LUNG: ClassCode = {
  category: ANATOMICAL_STRUCTURE,
  type: { value: "3341006", scheme: "SCT", meaning: "Right lung" },
};
const LESION: ClassCode = {
  category: ABNORMAL_STRUCTURE,
  type: { value: "52988006", scheme: "SCT", meaning: "Lesion" },
};

/** Normalised class name → its known codes (see the module comment for the table). */
const KNOWN_CLASS_CODES: ReadonlyMap<string, ClassCode> = new Map([
  ["lung", LUNG],
  ["lungs", LUNG],
  ["left_lung", LEFT_LUNG],
  ["lung_left", LEFT_LUNG],
  ["right_lung", RIGHT_LUNG],
  ["lung_right", RIGHT_LUNG],
  ["infection", LESION],
  ["lesion", LESION],
  ["lesions", LESION],
  ["covid", LESION],
  ["covid19", LESION],
  ["covid_19", LESION],
  ["covid_lesion", LESION],
  ["covid19_lesion", LESION],
  ["covid_19_lesion", LESION],
  ["covid_19_infection", LESION],
]);

/** "Left Lung", "left-lung" and "left_lung" all name the same class. */
function normaliseName(name: string): string {
  return name.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");
}

/** The known codes of a class name, or the generic ones. */
export function classCodeFor(name: string): ClassCode {
  return KNOWN_CLASS_CODES.get(normaliseName(name)) ?? GENERIC_CLASS_CODE;
}

/**
 * The meaning of each foreground class: `classNames[0]` is the background and gets no segment,
 * so entry `i` of the result describes class `i + 1` (segment number `i + 1`). Codes come from
 * `given` (the checkpoint's `classCodes`) when it names the class, else {@link classCodeFor}.
 *
 * @example
 * segmentMeanings(["background", "lung", "infection"]);
 * // → [{ label: "lung", category: SCT 123037004, type: SCT 39607008 }, { label: "infection", … }]
 */
export function segmentMeanings(
  classNames: readonly string[],
  given: ClassCodes = {},
): SegmentMeaning[] {
  if (classNames.length < 2) {
    throw new Error(
      `a segmentation needs a background and at least one foreground class, got ` +
        `${classNames.length} class name(s); pass the model's class names, background first`,
    );
  }
  return classNames.slice(1).map((name, i) => {
    if (name.trim() === "") {
      throw new Error(`class ${i + 1} has an empty name; SegmentLabel needs one`);
    }
    const code = given[name] ?? classCodeFor(name);
    return { label: name, category: code.category, type: code.type };
  });
}

/**
 * Parses a coded concept written `SCHEME:VALUE:Meaning`, e.g. `SCT:39607008:Lung` (the meaning
 * may itself contain colons). Throws naming what is wrong and the expected form. Limits are
 * DICOM's: CodingSchemeDesignator and CodeValue SH (16 characters), CodeMeaning LO (64); a
 * SNOMED CT (SCT) code value is a number.
 */
export function parseCodedConcept(text: string): CodedConcept {
  const form = 'expected "SCHEME:VALUE:Meaning", e.g. "SCT:39607008:Lung"';
  const first = text.indexOf(":");
  const second = first < 0 ? -1 : text.indexOf(":", first + 1);
  if (second < 0) throw new Error(`code "${text}" has fewer than three parts; ${form}`);
  const scheme = text.slice(0, first).trim();
  const value = text.slice(first + 1, second).trim();
  const meaning = text.slice(second + 1).trim();
  const check = (what: string, s: string, max: number) => {
    if (s === "") throw new Error(`code "${text}" has an empty ${what}; ${form}`);
    if (s.length > max) {
      throw new Error(`code "${text}": ${what} "${s}" is longer than DICOM's ${max} characters`);
    }
    if (s.includes("\\") || [...s].some((ch) => ch.charCodeAt(0) < 0x20)) {
      throw new Error(`code "${text}": ${what} may not contain backslashes or control characters`);
    }
  };
  check("coding scheme", scheme, 16);
  check("code value", value, 16);
  check("meaning", meaning, 64);
  if (!/^[A-Z0-9_-]+$/i.test(scheme)) {
    throw new Error(
      `code "${text}": coding scheme "${scheme}" should be a designator like SCT or DCM; ${form}`,
    );
  }
  if (scheme.toUpperCase() === "SCT" && !/^[1-9][0-9]{5,}$/.test(value)) {
    throw new Error(
      `code "${text}": a SNOMED CT code value is a number of at least 6 digits, got "${value}"`,
    );
  }
  return { scheme, value, meaning };
}
