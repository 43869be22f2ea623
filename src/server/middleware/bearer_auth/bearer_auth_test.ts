import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { bearerAuth, parseTokenFile, tokensEqual } from "./bearer_auth.ts";

const one = (t: string) => new Map([["default", t]]);

function app(options: Parameters<typeof bearerAuth>[0]) {
  const a = new Hono();
  a.use("*", bearerAuth(options));
  a.get("/r", (c) => c.text(`read by ${c.get("tokenName") ?? "nobody"}`));
  a.post("/w", (c) => c.text("written"));
  a.onError(renderError);
  return a;
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

Deno.test("bearerAuth: without a token nothing is checked", async () => {
  const res = await app({}).request("/w", { method: "POST" });
  assert.equal(res.status, 200);
  assert.equal((await app({ tokens: new Map() }).request("/r")).status, 200);
});

Deno.test("bearerAuth: by default reads and writes both need the right token", async () => {
  const a = app({ tokens: one("s3cret") });
  const read = await a.request("/r");
  assert.equal(read.status, 401);
  assert.match(read.headers.get("www-authenticate") ?? "", /^Bearer/);
  assert.equal((await read.json()).error.code, "unauthorized");
  const missing = await a.request("/w", { method: "POST" });
  assert.equal(missing.status, 401);
  assert.equal((await a.request("/w", { method: "POST", headers: bearer("wrong") })).status, 401);
  assert.equal((await a.request("/w", { method: "POST", headers: bearer("s3cre") })).status, 401);
  const basic = { authorization: "Basic czNjcmV0" };
  assert.equal((await a.request("/w", { method: "POST", headers: basic })).status, 401);
  const ok = await a.request("/w", { method: "POST", headers: bearer("s3cret") });
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), "written");
  assert.equal(
    await (await a.request("/r", { headers: bearer("s3cret") })).text(),
    "read by default",
  );
});

Deno.test("bearerAuth mutating (opt-in): GET open, POST needs the token", async () => {
  const a = app({ tokens: one("s3cret"), scope: "mutating" });
  assert.equal(await (await a.request("/r")).text(), "read by nobody");
  assert.equal(
    await (await a.request("/r", { headers: bearer("s3cret") })).text(),
    "read by default",
  );
  assert.equal((await a.request("/w", { method: "POST" })).status, 401);
  assert.equal((await a.request("/w", { method: "POST", headers: bearer("s3cret") })).status, 200);
});

Deno.test("bearerAuth: several named tokens, each accepted and named, none other", async () => {
  const tokens = new Map([["scanner", "tok-a"], ["viewer", "tok-b"], ["ops", "tok-c"]]);
  const a = app({ tokens });
  for (const [name, token] of tokens) {
    const res = await a.request("/r", { headers: bearer(token) });
    assert.equal(await res.text(), `read by ${name}`);
  }
  assert.equal((await a.request("/r", { headers: bearer("tok-d") })).status, 401);
  assert.equal((await a.request("/r", { headers: bearer("tok-a tok-b") })).status, 401);
});

Deno.test("tokensEqual compares whole tokens of any length", async () => {
  assert.equal(await tokensEqual("abc", "abc"), true);
  assert.equal(await tokensEqual("abc", "abd"), false);
  assert.equal(await tokensEqual("", "abc"), false);
  assert.equal(await tokensEqual("abc".repeat(100), "abc"), false);
});

Deno.test("bearerAuth: public paths are open to GET only", async () => {
  const a = app({ tokens: one("s3cret"), public: ["/r", "/w"] });
  assert.equal((await a.request("/r")).status, 200);
  assert.equal((await a.request("/w", { method: "POST" })).status, 401);
  assert.equal((await app({ tokens: one("s3cret") }).request("/r")).status, 401);
});

Deno.test("parseTokenFile: name:token lines, a bare token, comments and blank lines", () => {
  assert.deepEqual(
    [...parseTokenFile("# clients\n\nscanner:abc123\r\n  viewer : def456  \n")],
    [["scanner", "abc123"], ["viewer", "def456"]],
  );
  assert.deepEqual([...parseTokenFile("0123456789abcdef\n")], [["default", "0123456789abcdef"]]);
  // A token may itself hold ":" after the name.
  assert.deepEqual([...parseTokenFile("a:b:c\n")], [["a", "b:c"]]);
});

Deno.test("parseTokenFile: bad files get the line number, never the content", () => {
  const cases: [string, RegExp][] = [
    ["", /holds no token/],
    ["# only a comment\n", /holds no token/],
    ["ok:aaa\nbad name:sekrit-1\n", /line 2: the name before ":"/],
    ["a:\n", /line 1: expected "name:token"/],
    ["a:sek rit-2\n", /line 1: expected/],
    ["a:sekrit-é\n", /line 1: .*visible ASCII/],
    ["a:sekrit-3\na:sekrit-4\n", /line 2: the name is already used on line 1/],
    ["sekrit-5\nsekrit-6\n", /line 2: .*default; name each one/],
    ["a:sekrit-7\nb:sekrit-7\n", /line 2: the same token as line 1/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseTokenFile(text, "--token-file t.txt"), (e: Error) => {
      assert.match(e.message, message);
      assert.match(e.message, /^--token-file t\.txt/);
      assert.doesNotMatch(e.message, /sekrit|sek rit/, e.message);
      return true;
    });
  }
});

Deno.test("bearerAuth: a token no header can carry is refused at start, not dropped", () => {
  // Dropping an empty token silently left a server that was told to need one open to all.
  for (const bad of ["", "two words", "line\nbreak", "sekrit-é"]) {
    assert.throws(
      () => bearerAuth({ tokens: new Map([["a", "ok-1"], ["b", bad]]) }),
      /bearer token "b" is empty or holds spaces or non-ASCII/,
      JSON.stringify(bad),
    );
  }
});
