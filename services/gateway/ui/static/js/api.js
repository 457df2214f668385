// The gateway's API as the page uses it: every call carries the key from the session
// (`Authorization: Bearer`); a 401 forgets the key and asks for it again.

const STORE = "cb.apiKey";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export const key = () => sessionStorage.getItem(STORE) || "";
export const setKey = (value) => sessionStorage.setItem(STORE, value);
export const clearKey = () => sessionStorage.removeItem(STORE);
export const whenUnauthorized = (fn) => { onUnauthorized = fn; };

function headers(json) {
  const h = { Authorization: `Bearer ${key()}` };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function refused() {
  clearKey();
  onUnauthorized();
  return new ApiError(401, { message: "the API key was refused" });
}

/** JSON of `method path`; throws ApiError (status, google.rpc.Status body) when not 2xx. */
export async function api(path, { method = "GET", body } = {}) {
  const res = await fetch(path, { method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) throw refused();
  const text = await res.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { message: text }; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Whether the gateway routes `path` (404 = no such route or backend: the feature is not there). */
export async function available(path) {
  try { await api(path); return true; } catch (err) { return !(err instanceof ApiError && err.status === 404); }
}

/** Follow a Server-Sent Events route (fetch, since EventSource cannot send the key).
 *  Calls onMessage(json) per event and onEnd() when the stream ends (the resource is gone);
 *  reconnects after a dropped connection. Returns a function that stops it. */
export function watch(path, onMessage, onEnd = () => {}) {
  const abort = new AbortController();
  let stopped = false;
  const run = async () => {
    let delay = 500;
    while (!stopped) {
      try {
        const res = await fetch(path, { headers: headers(false), signal: abort.signal });
        if (res.status === 401) { refused(); return; }
        if (res.status === 404) { onEnd(); return; }
        if (!res.ok) throw new ApiError(res.status, {});
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) name = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (name === "end") { onEnd(); return; }
            if (name === "message" && data) onMessage(JSON.parse(data));
          }
        }
      } catch (err) {
        if (stopped) return;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  run();
  return () => { stopped = true; abort.abort(); };
}

/** Every page of a List route: `field` is the repeated field of the response. */
export async function listAll(path, field) {
  const out = [];
  let token = "";
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page = await api(`${path}${sep}page_size=500${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
    out.push(...(page[field] || []));
    token = page.nextPageToken || "";
  } while (token);
  return out;
}

export const enc = encodeURIComponent;
