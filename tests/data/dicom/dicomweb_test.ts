/**
 * The DICOMweb client against a real PACS (Debian's Orthanc with its DICOMweb plugin) holding
 * real DICOM files nobody here wrote (python3-pydicom's test files): QIDO finds what was
 * uploaded, WADO returns it byte for byte, STOW stores a rewritten copy, and failures (wrong
 * password, unknown study, a refused instance) say what went wrong without the secret.
 * Behaviour no PACS shows on demand — bearer tokens, redirects, timeouts, non-DICOMweb answers,
 * truncated bodies — is checked against small local servers; the series choice on hand-made
 * QIDO JSON.
 */

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import dcmjs from "dcmjs";
import { DicomWebClient, DicomWebError, StowError } from "../../../src/data/dicom/dicomweb.ts";
import { dicomWebAuthFromEnv } from "../../../src/data/dicom/dicomweb_auth.ts";
import { type DicomJsonDataset, jsonString } from "../../../src/data/dicom/dicom_json.ts";
import { chooseSeries, chooseSeriesOnServer } from "../../../src/data/dicom/series_choice.ts";
import { orthancMissing, startOrthanc } from "../../fixtures/orthanc.ts";

const PYDICOM = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
const missing = orthancMissing() ??
  (existsSync(join(PYDICOM, "CT_small.dcm"))
    ? undefined
    : "pydicom's test files are not installed: apt-get install python3-pydicom");
if (missing) console.warn(`skipping the DICOMweb tests against Orthanc: ${missing}`);

/** Asserts that `promise` rejects with a DicomWebError of `kind` whose message matches. */
async function rejectsWith(
  promise: Promise<unknown>,
  kind: string,
  message: RegExp,
): Promise<DicomWebError> {
  let caught: unknown;
  await rejects(promise, (e) => {
    caught = e;
    return true;
  });
  ok(caught instanceof DicomWebError, `expected a DicomWebError, got ${caught}`);
  strictEqual(caught.kind, kind, caught.message);
  ok(message.test(caught.message), caught.message);
  return caught;
}

// ---------------------------------------------------------------------------------------------
// Credentials from the environment

Deno.test("dicomWebAuthFromEnv: token, user/password, none, and errors that name variables only", () => {
  deepStrictEqual(dicomWebAuthFromEnv({ VOXSEG_DICOMWEB_TOKEN: "t0k" }), {
    kind: "bearer",
    token: "t0k",
  });
  deepStrictEqual(
    dicomWebAuthFromEnv({
      get: (k: string) => ({ VOXSEG_DICOMWEB_USER: "u", VOXSEG_DICOMWEB_PASSWORD: "p" })[k],
    }),
    { kind: "basic", user: "u", password: "p" },
  );
  strictEqual(dicomWebAuthFromEnv({}), undefined);
  strictEqual(dicomWebAuthFromEnv({ VOXSEG_DICOMWEB_TOKEN: "" }), undefined);
  throws(
    () => dicomWebAuthFromEnv({ VOXSEG_DICOMWEB_PASSWORD: "hunter2" }),
    (e: Error) =>
      /VOXSEG_DICOMWEB_USER is not set/.test(e.message) && !e.message.includes("hunter2"),
  );
  throws(
    () => dicomWebAuthFromEnv({ VOXSEG_DICOMWEB_TOKEN: "secret-token", VOXSEG_DICOMWEB_USER: "u" }),
    (e: Error) => /unset one kind/.test(e.message) && !e.message.includes("secret-token"),
  );
});

Deno.test("DicomWebClient: rejects a base URL with a query, and UIDs that are not UIDs", async () => {
  throws(
    () => new DicomWebClient("http://pacs.example/dicom-web?access_token=abc"),
    (e: Error) => /carries a query/.test(e.message) && !e.message.includes("abc"),
  );
  throws(() => new DicomWebClient("ftp://pacs.example/"), /must be http/);
  const client = new DicomWebClient("http://127.0.0.1:1/dicom-web");
  await rejects(client.searchSeries("../../instances"), /study UID given is not a DICOM UID/);
  await rejects(client.retrieveSeries("1.2", "1.2?x=1"), /series UID given is not a DICOM UID/);
});

// ---------------------------------------------------------------------------------------------
// Local servers for what a PACS does not show on demand

interface Seen {
  path: string;
  authorization: string | null;
  accept: string | null;
}

async function withServer<T>(
  handler: (req: Request) => Response | Promise<Response>,
  fn: (url: string, seen: Seen[]) => Promise<T>,
): Promise<T> {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    seen.push({
      path: url.pathname + url.search,
      authorization: req.headers.get("authorization"),
      accept: req.headers.get("accept"),
    });
    return handler(req);
  });
  try {
    return await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/dicom+json" },
  });

Deno.test("bearer token: sent as Authorization; a 500 error names origin and path, not the token or query", async () => {
  const token = "tok-" + crypto.randomUUID();
  await withServer(
    (req) =>
      new URL(req.url).pathname.endsWith("/studies")
        ? json([])
        : new Response("boom", { status: 500 }),
    async (url, seen) => {
      const client = new DicomWebClient(`${url}/dicom-web/`, { auth: { kind: "bearer", token } });
      deepStrictEqual(
        await client.searchStudies({
          PatientID: "PAT-123",
          includefield: ["00080020", "00100010"],
        }),
        [],
      );
      strictEqual(seen[0].authorization, `Bearer ${token}`);
      strictEqual(seen[0].accept, "application/dicom+json");
      strictEqual(
        seen[0].path,
        "/dicom-web/studies?PatientID=PAT-123&includefield=00080020&includefield=00100010",
      );
      const error = await rejectsWith(
        client.searchSeries("1.2.3", { PatientID: "PAT-123" }),
        "server",
        /HTTP 500/,
      );
      ok(error.message.includes(`${url}/dicom-web/studies/1.2.3/series`), error.message);
      ok(!error.message.includes(token) && !error.message.includes("PAT-123"), error.message);
    },
  );
});

Deno.test("credentials in the base URL's userinfo: sent as Basic, never shown", async () => {
  await withServer(() => new Response(null, { status: 401 }), async (url, seen) => {
    const client = new DicomWebClient(
      url.replace("http://", "http://ann:pa%24%24word@") + "/dicom-web",
    );
    ok(!client.baseUrl.includes("ann") && !client.baseUrl.includes("word"), client.baseUrl);
    const error = await rejectsWith(
      client.searchStudies(),
      "unauthorized",
      /credentials were rejected/,
    );
    strictEqual(seen[0].authorization, `Basic ${btoa("ann:pa$$word")}`);
    ok(!/pa\$\$word|pa%24%24word|ann:/.test(error.message + String(error.stack)), error.message);
  });
});

Deno.test("redirects: same origin followed with credentials; another origin not followed while they are set", async () => {
  await withServer(
    () => json([{ "0020000D": { vr: "UI", Value: ["1.2"] } }]),
    async (other, otherSeen) => {
      await withServer((req) => {
        const path = new URL(req.url).pathname;
        if (path === "/old/studies") {
          return new Response(null, { status: 301, headers: { location: "/new/studies" } });
        }
        if (path === "/new/studies") {
          return json([]);
        }
        return new Response(null, {
          status: 302,
          headers: { location: `${other}/dicom-web/studies?token=x` },
        });
      }, async (url, seen) => {
        const auth = { kind: "basic" as const, user: "u", password: "pw-" + crypto.randomUUID() };
        deepStrictEqual(await new DicomWebClient(`${url}/old`, { auth }).searchStudies(), []);
        deepStrictEqual(seen.map((s) => [s.path, !!s.authorization]), [["/old/studies", true], [
          "/new/studies",
          true,
        ]]);

        const error = await rejectsWith(
          new DicomWebClient(`${url}/away`, { auth }).searchStudies(),
          "redirect",
          /another origin/,
        );
        ok(
          error.message.includes(other) && !error.message.includes("token=x") &&
            !error.message.includes(auth.password),
        );
        strictEqual(otherSeen.length, 0);
        // Without credentials there is nothing to leak: the redirect is followed.
        strictEqual((await new DicomWebClient(`${url}/away`).searchStudies()).length, 1);
        strictEqual(otherSeen[0].authorization, null);
      });
    },
  );
});

Deno.test("timeout: a server that never answers fails after timeoutMs with a clear error", async () => {
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  await withServer(async () => {
    await held;
    return json([]);
  }, async (url) => {
    const client = new DicomWebClient(`${url}/dicom-web`, { timeoutMs: 200 });
    await rejectsWith(
      client.searchStudies(),
      "timeout",
      /did not answer within 0.2 s.*raise timeoutMs/,
    );
    release();
  });
});

Deno.test("non-DICOMweb answers: an HTML page, JSON that is not a dataset array, a 404 root", async () => {
  await withServer((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/html/studies") {
      return new Response("<html>login</html>", { headers: { "content-type": "text/html" } });
    }
    if (path === "/obj/studies") return json({ error: "nope" });
    if (path.startsWith("/wado/")) {
      return new Response("{}", { headers: { "content-type": "application/json" } });
    }
    return new Response("not here", { status: 404 });
  }, async (url) => {
    await rejectsWith(
      new DicomWebClient(`${url}/html`).searchStudies(),
      "protocol",
      /answered text\/html, not DICOM JSON/,
    );
    await rejectsWith(
      new DicomWebClient(`${url}/obj`).searchStudies(),
      "protocol",
      /not an array of DICOM JSON datasets/,
    );
    await rejectsWith(
      new DicomWebClient(`${url}/nothing`).searchStudies(),
      "not-found",
      /check the base URL/,
    );
    await rejectsWith(
      new DicomWebClient(`${url}/wado`).retrieveSeries("1.2", "1.2.3"),
      "protocol",
      /answered application\/json, not multipart\/related/,
    );
  });
});

/** A minimal DICOM Part 10 lookalike: preamble, "DICM", a few bytes. */
function part10(fill: number): Uint8Array {
  const bytes = new Uint8Array(200).fill(fill);
  bytes.set([0x44, 0x49, 0x43, 0x4d], 128);
  return bytes;
}

Deno.test("WADO-RS over a local server: parts parsed and copied, truncated body and size limit rejected", async () => {
  const instances = [part10(1), part10(2)];
  const boundary = "b0und";
  const framed = (parts: Uint8Array[], close: boolean) => {
    const chunks: (string | Uint8Array)[] = [];
    for (const p of parts) {
      chunks.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, p, "\r\n");
    }
    if (close) chunks.push(`--${boundary}--\r\n`);
    return new Blob(chunks as BlobPart[]);
  };
  await withServer(async (req) => {
    const truncated = new URL(req.url).pathname.includes("/series/9.9");
    return new Response(await framed(instances, !truncated).arrayBuffer(), {
      headers: {
        "content-type": `multipart/related; type="application/dicom"; boundary="${boundary}"`,
      },
    });
  }, async (url, seen) => {
    const client = new DicomWebClient(url);
    const got = await client.retrieveSeries("1.2", "3.4");
    deepStrictEqual(got, instances);
    ok(got[0].buffer.byteLength === 200, "each instance owns its buffer");
    strictEqual(seen[0].accept, 'multipart/related; type="application/dicom"; transfer-syntax=*');
    await rejectsWith(client.retrieveSeries("1.2", "9.9"), "protocol", /truncated/);
    await rejectsWith(
      new DicomWebClient(url, { maxResponseBytes: 300 }).retrieveSeries("1.2", "3.4"),
      "too-large",
      /larger than the limit.*raise maxTotalBytes \(maxResponseBytes/,
    );
  });
});

Deno.test("network failure: the message names origin and path, not the query", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const client = new DicomWebClient(`http://127.0.0.1:${port}/dicom-web`, {
    auth: { kind: "bearer", token: "zzz-secret" },
  });
  const error = await rejectsWith(
    client.searchStudies({ PatientName: "DOE^JANE" }),
    "network",
    /connection to the DICOMweb server/,
  );
  ok(!error.message.includes("DOE") && !error.message.includes("zzz-secret"), error.message);
});

// ---------------------------------------------------------------------------------------------
// Series choice on hand-made QIDO results

function series(
  uid: string,
  modality: string,
  instances: number,
  extra: { number?: number; imageType?: string[]; description?: string } = {},
): DicomJsonDataset {
  const dataset: DicomJsonDataset = {
    "0020000E": { vr: "UI", Value: [uid] },
    "00080060": { vr: "CS", Value: [modality] },
    "00201209": { vr: "IS", Value: [instances] },
  };
  if (extra.number !== undefined) dataset["00200011"] = { vr: "IS", Value: [String(extra.number)] };
  if (extra.imageType) dataset["00080008"] = { vr: "CS", Value: extra.imageType };
  if (extra.description) dataset["0008103E"] = { vr: "LO", Value: [extra.description] };
  return dataset;
}

Deno.test("chooseSeries: the CT volume with most slices; localizers, derived, single images and other modalities skipped", () => {
  const choice = chooseSeries([
    series("1.1", "CT", 400, { imageType: ["ORIGINAL", "PRIMARY", "LOCALIZER"] }),
    series("1.2", "CT", 120, { number: 3 }),
    series("1.3", "CT", 300, { imageType: ["DERIVED", "SECONDARY", "REFORMATTED"] }),
    series("1.4", "CT", 250, { description: "Topogram 0.6 T20f John Smith" }),
    series("1.5", "SEG", 1),
    series("1.6", "MR", 500),
    series("1.7", "CT", 1),
    series("1.8", "CT", 80, { number: 2 }),
  ]);
  strictEqual(choice.seriesInstanceUid, "1.2");
  strictEqual(choice.sliceCount, 120);
  deepStrictEqual(choice.skipped.map((s) => [s.seriesInstanceUid, s.why]), [
    ["1.1", "localizer, ImageType LOCALIZER"],
    ["1.3", "derived images, ImageType DERIVED"],
    ["1.4", "localizer, by its description"],
    ["1.5", "SEG, not CT"],
    ["1.6", "MR, not CT"],
    ["1.7", "a single image, not a volume"],
  ]);
  ok(
    choice.reason.startsWith(
      "CT series 1.2 (number 3): 120 slices, the most of 2 CT volumes; skipped 1.1 (localizer",
    ),
    choice.reason,
  );
  ok(!/John|Smith|Topogram/.test(choice.reason), "the reason repeats no description text");
});

Deno.test("chooseSeries: ties go to the lowest series number; instance details override the series result", () => {
  const tie = chooseSeries([
    series("2.9", "CT", 50, { number: 7 }),
    series("2.8", "CT", 50, { number: 4 }),
  ]);
  strictEqual(tie.seriesInstanceUid, "2.8");
  ok(/tied with another of 2 CT volumes/.test(tie.reason), tie.reason);
  const details = new Map([
    ["3.1", { imageType: ["ORIGINAL", "PRIMARY", "LOCALIZER"] }],
    ["3.2", { sliceCount: 220 }], // one enhanced multi-frame instance of 220 frames
  ]);
  const choice = chooseSeries([series("3.1", "CT", 900), series("3.2", "CT", 1)], details);
  strictEqual(choice.seriesInstanceUid, "3.2");
  ok(/220 slices, the only CT volume; skipped 3.1 \(localizer/.test(choice.reason), choice.reason);
});

Deno.test("chooseSeries: no CT volume is an error that lists why each series was skipped", () => {
  throws(
    () =>
      chooseSeries([
        series("4.1", "MR", 30),
        series("4.2", "CT", 2, { imageType: ["ORIGINAL", "PRIMARY", "SCOUT"] }),
      ]),
    /no CT volume series to segment among 2 series: skipped 4\.1 \(MR, not CT\), 4\.2 \(localizer, ImageType SCOUT\); name the series/,
  );
  throws(() => chooseSeries([]), /among 0 series; name the series/);
});

// ---------------------------------------------------------------------------------------------
// Against Orthanc

/** The pydicom files uploaded: two single images and three studies of small series. */
function pydicomFiles(): string[] {
  const files = [join(PYDICOM, "CT_small.dcm"), join(PYDICOM, "MR_small.dcm")];
  for (const study of ["77654033", "98892001", "98892003"]) {
    const studyDir = join(PYDICOM, "dicomdirtests", study);
    for (const seriesDir of Deno.readDirSync(studyDir)) {
      for (const file of Deno.readDirSync(join(studyDir, seriesDir.name))) {
        files.push(join(studyDir, seriesDir.name, file.name));
      }
    }
  }
  return files.sort();
}

interface Header {
  study: string;
  series: string;
  sop: string;
}

function header(bytes: Uint8Array): Header {
  const dict = dcmjs.data.DicomMessage.readFile(bytes.slice().buffer).dict;
  const value = (tag: string) => String(dict[tag].Value[0]);
  return { study: value("0020000D"), series: value("0020000E"), sop: value("00080018") };
}

/** A fresh UID under the 2.25 root (a UUID as a decimal integer). */
function newUid(): string {
  return `2.25.${BigInt(`0x${crypto.randomUUID().replaceAll("-", "")}`)}`;
}

/** CT_small as a new instance of a new series in the same study, rewritten with dcmjs. */
function rewrittenCopy(bytes: Uint8Array, sop: string, seriesUid: string): Uint8Array {
  const message = dcmjs.data.DicomMessage.readFile(bytes.slice().buffer);
  message.dict["00080018"].Value = [sop];
  message.dict["0020000E"].Value = [seriesUid];
  message.meta["00020003"].Value = [sop];
  return new Uint8Array(message.write());
}

const sortedBytes = (list: Uint8Array[]) =>
  [...list].sort((a, b) => header(a).sop < header(b).sop ? -1 : 1);

Deno.test({
  name:
    "Orthanc (auth on): QIDO finds the uploads, WADO returns them byte for byte, STOW stores a copy",
  ignore: missing !== undefined,
  async fn(t) {
    const orthanc = await startOrthanc();
    try {
      const files = new Map(pydicomFiles().map((path) => [path, Deno.readFileSync(path)]));
      for (const bytes of files.values()) await orthanc.upload(bytes);
      const headers = [...files.values()].map(header);
      const client = new DicomWebClient(orthanc.dicomWebUrl, {
        auth: { kind: "basic", user: orthanc.user, password: orthanc.password },
      });
      const ctSmall = header(files.get(join(PYDICOM, "CT_small.dcm"))!);

      await t.step("QIDO-RS: every study, one by UID, a study's series with counts", async () => {
        const studies = await client.searchStudies();
        deepStrictEqual(
          studies.map((s) => jsonString(s, "0020000D")).sort(),
          [...new Set(headers.map((h) => h.study))].sort(),
        );
        const one = await client.searchStudies({ StudyInstanceUID: ctSmall.study });
        strictEqual(one.length, 1);
        strictEqual(jsonString(one[0], "00080061"), "CT");
        const ctStudy = header(files.get(join(PYDICOM, "dicomdirtests/98892001/CT5N/2062"))!);
        const found = await client.searchSeries(ctStudy.study);
        const counts = Object.fromEntries(
          found.map((s) => [jsonString(s, "0020000E"), jsonString(s, "00201209")]),
        );
        for (
          const uid of new Set(
            headers.filter((h) => h.study === ctStudy.study).map((h) => h.series),
          )
        ) {
          strictEqual(counts[uid], String(headers.filter((h) => h.series === uid).length));
        }
        const instances = await client.searchInstances(ctStudy.study, ctStudy.series);
        deepStrictEqual(
          instances.map((i) => jsonString(i, "00080018")).sort(),
          headers.filter((h) => h.series === ctStudy.series).map((h) => h.sop).sort(),
        );
      });

      await t.step(
        "WADO-RS: a series' instances are the uploaded files, byte for byte; metadata lists them",
        async () => {
          const ct2 = [...files].filter(([path]) => path.includes("77654033/CT2/")).map((
            [, bytes],
          ) => bytes);
          const { study, series: seriesUid } = header(ct2[0]);
          const retrieved = await client.retrieveSeries(study, seriesUid);
          strictEqual(retrieved.length, 4);
          deepStrictEqual(sortedBytes(retrieved), sortedBytes(ct2));
          const metadata = await client.retrieveSeriesMetadata(study, seriesUid);
          deepStrictEqual(
            metadata.map((m) => jsonString(m, "00080018")).sort(),
            ct2.map((b) => header(b).sop).sort(),
          );
        },
      );

      await t.step("series choice on the server: CT5N, not the CT2N localizer", async () => {
        const scout = header(files.get(join(PYDICOM, "dicomdirtests/98892001/CT2N/6293"))!);
        const axial = header(files.get(join(PYDICOM, "dicomdirtests/98892001/CT5N/2062"))!);
        const choice = await chooseSeriesOnServer(client, axial.study);
        strictEqual(choice.seriesInstanceUid, axial.series);
        strictEqual(choice.sliceCount, 5);
        deepStrictEqual(choice.skipped, [{
          seriesInstanceUid: scout.series,
          why: "localizer, ImageType LOCALIZER",
        }]);
        ok(!/Scout|SmartScore/.test(choice.reason), choice.reason);
      });

      await t.step(
        "STOW-RS: a rewritten CT_small is stored, listed by QIDO and retrieved unchanged",
        async () => {
          const sop = newUid();
          const seriesUid = newUid();
          const copy = rewrittenCopy(files.get(join(PYDICOM, "CT_small.dcm"))!, sop, seriesUid);
          const result = await client.store(ctSmall.study, [copy]);
          deepStrictEqual(result.failed, []);
          deepStrictEqual(result.stored.map((s) => s.sopInstanceUid), [sop]);
          const listed = await client.searchSeries(ctSmall.study);
          ok(
            listed.some((s) => jsonString(s, "0020000E") === seriesUid),
            "QIDO lists the new series",
          );
          deepStrictEqual(await client.retrieveSeries(ctSmall.study, seriesUid), [copy]);
        },
      );

      await t.step(
        "STOW-RS failures: another study's instance (reason 0x0110), an unreadable one",
        async () => {
          const mr = files.get(join(PYDICOM, "MR_small.dcm"))!;
          await rejects(client.store(ctSmall.study, [mr]), (e) => {
            ok(e instanceof StowError, String(e));
            ok(
              /stored 0 of 1 instances \(HTTP 409\); failed [0-9.]+: reason 0x0110 \(272\) processing failure/
                .test(e.message),
              e.message,
            );
            strictEqual(e.result.failed[0].reason, 0x0110);
            return true;
          });
          const unreadable = part10(7);
          await rejects(client.store(undefined, [mr, unreadable]), (e) => {
            ok(e instanceof StowError, String(e));
            ok(
              /stored 1 of 2 instances.*1 instance\(s\) neither stored nor listed as failed/.test(
                e.message,
              ),
              e.message,
            );
            strictEqual(e.result.stored.length, 1);
            return true;
          });
        },
      );

      await t.step("wrong password: 401 that names the fix and not the password", async () => {
        const password = "wrong-" + crypto.randomUUID();
        const wrong = new DicomWebClient(orthanc.dicomWebUrl, {
          auth: { kind: "basic", user: orthanc.user, password },
        });
        const error = await rejectsWith(
          wrong.searchStudies(),
          "unauthorized",
          /401 Unauthorized: the credentials were rejected: check/,
        );
        ok(!error.message.includes(password) && !String(error.stack).includes(password));
        ok(!error.message.includes(orthanc.password));
        await rejectsWith(
          new DicomWebClient(orthanc.dicomWebUrl).searchStudies(),
          "unauthorized",
          /the server needs credentials: set VOXSEG_DICOMWEB_TOKEN/,
        );
      });

      await t.step("unknown study: WADO-RS 404 that says so; QIDO finds nothing", async () => {
        const unknown = newUid();
        await rejectsWith(
          client.retrieveSeries(unknown, "1.2.3"),
          "not-found",
          new RegExp(`no series 1\\.2\\.3 in study ${unknown.replaceAll(".", "\\.")}`),
        );
        deepStrictEqual(await client.searchStudies({ StudyInstanceUID: unknown }), []);
        deepStrictEqual(await client.searchSeries(unknown), []);
      });
    } finally {
      await orthanc.stop();
    }
  },
});

Deno.test({
  name: "Orthanc (auth off): a client without credentials searches and retrieves",
  ignore: missing !== undefined,
  async fn() {
    const orthanc = await startOrthanc({ authentication: false });
    try {
      const bytes = Deno.readFileSync(join(PYDICOM, "CT_small.dcm"));
      await orthanc.upload(bytes);
      const { study, series: seriesUid } = header(bytes);
      const client = new DicomWebClient(orthanc.dicomWebUrl);
      strictEqual((await client.searchStudies()).length, 1);
      deepStrictEqual(await client.retrieveSeries(study, seriesUid), [bytes]);
    } finally {
      await orthanc.stop();
    }
  },
});
