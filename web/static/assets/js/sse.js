// sse.js: Server-Sent Events over fetch. The browser's EventSource cannot send an
// Authorization header, so the stream is read with fetch and parsed here (the
// text/event-stream format: `event:`, `data:` lines, a blank line ends an event).
// Reconnects with backoff when the connection drops before the server says it is done.

import { errorFrom } from "./api.js";
import { session } from "./session.js";

/**
 * Follows `service` `path` until `signal` aborts or `onEvent` returns true (finished).
 * `onEvent(type, data)` gets parsed JSON data; `onError(error)` hears about failures it
 * will retry, and the last one when it gives up (a 4xx answer is not retried).
 */
export async function follow(service, path, { onEvent, onError, signal }) {
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(`${service.base}${path}`, {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${session.token}` },
        signal,
        cache: "no-store",
      });
      if (!response.ok) {
        const error = await errorFrom(response, service);
        if (response.status === 401) session.expire(error.message);
        if (response.status < 500) {
          onError?.(error, { final: true });
          return;
        }
        throw error;
      }
      backoff = 500;
      if (await readEvents(response.body, onEvent)) return;
    } catch (e) {
      if (signal.aborted) return;
      onError?.(e, { final: false });
    }
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 10_000);
  }
}

/** Reads events until the stream ends (false) or onEvent says finished (true). */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(buffer[newline] === "\r" ? newline + 2 : newline + 1);
      if (line === "") {
        if (data.length) {
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n"));
          } catch {
            parsed = data.join("\n");
          }
          if (onEvent(type, parsed)) {
            reader.cancel().catch(() => {});
            return true;
          }
        }
        type = "message";
        data = [];
      } else if (line.startsWith("event:")) {
        type = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
      // `id:`, `retry:` and `:` comments (keep-alives) need nothing here.
    }
  }
}
