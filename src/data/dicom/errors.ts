/**
 * The one error type of DICOM input: what a user sent cannot be read as an image series. Its
 * message names the problem and the fix, refers to files by their names relative to the input
 * (never absolute paths) and never quotes patient or study attributes, so a server may return
 * it to a client as it is (HTTP 400/422) and a CLI may print it without a stack trace.
 */
export class DicomInputError extends Error {
  override name = "DicomInputError";
}
