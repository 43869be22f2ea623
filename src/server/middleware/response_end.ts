/**
 * Calls back once a response's body has been sent to its end, failed, or been cancelled by
 * the client going away — the moment a streamed response (server-sent events, a file) is
 * over, which the middleware chain, returning at the headers, does not see.
 */

/**
 * `res` with its body wrapped so that `done(bytes)` runs exactly once when the body ends
 * (bytes sent so far); at once for a response without a body.
 *
 * @example
 * c.res = onResponseEnd(c.res, (bytes) => log({ bytes }));
 */
export function onResponseEnd(res: Response, done: (bytes: number) => void): Response {
  if (!res.body) {
    done(0);
    return res;
  }
  const reader = res.body.getReader();
  let bytes = 0;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    done(bytes);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          end();
          controller.close();
          return;
        }
        bytes += value.byteLength;
        controller.enqueue(value);
      } catch (e) {
        end();
        controller.error(e);
      }
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}
