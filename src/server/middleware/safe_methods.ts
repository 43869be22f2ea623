/**
 * Methods that only read. Every other method counts as a write — also one in lower case
 * (`patch`, which fetch does not normalise) or an invented one — so that a route added later
 * under a new method is guarded without touching this list. The drain gate, the bearer-token
 * check (scope "mutating") and the cross-origin check all draw the line here.
 */
export const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
