// The server's own JSON API, called with the key the person entered (x-api-key).
// A 401 asks for a key (once for all requests waiting on it) and retries.

const KEY = "waypoint.apiKey";
let askForKey = null; // set by app.js: () => Promise<void>, resolves once a key is stored
let asking = null;

export function getKey() { return sessionStorage.getItem(KEY); }
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}
export function onUnauthorized(fn) { askForKey = fn; }

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

function headers(extra = {}) {
  const out = { accept: "application/json", ...extra };
  const key = getKey();
  if (key) out["x-api-key"] = key;
  return out;
}

function url(path, query) {
  const found = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) found.searchParams.append(name, one);
  }
  return found;
}

async function unauthorized() {
  if (!askForKey) throw new ApiError(401, "an API key is needed");
  asking = asking || askForKey().finally(() => { asking = null; });
  await asking;
}

/** One JSON request; throws ApiError with the server's `detail` on a non-2xx answer. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: headers(body !== undefined ? { "content-type": "application/json" } : {}), signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(url(path, query), init);
    if (res.status === 401 && attempt < 3) { await unauthorized(); continue; }
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail ?? detail; } catch { /* not JSON */ }
      throw new ApiError(res.status, detail);
    }
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }
}

/** Server-Sent Events over fetch (EventSource cannot send x-api-key): yields
 * {event, id, data} until the stream ends or `signal` aborts. */
export async function* sse(path, { signal, query } = {}) {
  const res = await fetch(url(path, query), { headers: headers({ accept: "text/event-stream" }), signal });
  if (res.status === 401) { await unauthorized(); yield* sse(path, { signal, query }); return; }
  if (!res.ok || !res.body) throw new ApiError(res.status, res.statusText);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", id: null, data: [] };
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + (buffer[cut] === "\r" ? 2 : 1));
      if (line === "") {
        if (event.data.length) {
          const text = event.data.join("\n");
          let data = text;
          try { data = JSON.parse(text); } catch { /* plain text */ }
          yield { event: event.event, id: event.id, data };
        }
        event = { event: "message", id: null, data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.event = val;
        else if (field === "id") event.id = val;
        else if (field === "data") event.data.push(val);
      }
    }
  }
}
