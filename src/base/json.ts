/** Parsing JSON that may hold patient data or secrets, without ever quoting it in an error. */

/**
 * `JSON.parse(text)`; on a syntax error throws `fail(where)`, where `where` is " (at position N
 * (line L column C))" when the parser said so, else "". The parser's own message quotes the text
 * it choked on, so it never reaches an error: only the position does.
 */
export function parseJson(text: string, fail: (where: string) => Error): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = /at position \d+(?: \(line \d+ column \d+\))?/.exec((e as Error).message);
    throw fail(at ? ` (${at[0]})` : "");
  }
}
