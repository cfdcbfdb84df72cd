// Talking to the server. Every request goes through `request`, which
// - counts what is in flight: `document.body.dataset.idle` is "true" exactly when nothing
//   is (tests wait on it instead of sleeping);
// - treats 503 as "busy": waits its Retry-After (at most 5 s) and tries again;
// - passes an AbortSignal through, so a panel can drop a request it no longer wants.

let pending = 0;
const showIdle = () => { document.body.dataset.idle = String(pending === 0); };
showIdle();

/** Mark the page busy until the returned function is called (calling it again is a no-op). */
export function busy() {
  pending++;
  showIdle();
  let done = false;
  return () => {
    if (done) return;
    done = true;
    pending--;
    showIdle();
  };
}

/** An answer other than 2xx; `message` is the server's `detail`. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** True for the rejection of a request whose signal was aborted: not an error to show. */
export const isAbort = (e) => e?.name === "AbortError";

const TRIES = 5;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });
}

async function detail(r) {
  const d = (await r.json().catch(() => ({}))).detail;
  return typeof d === "string" ? d : d ? JSON.stringify(d) : r.statusText;
}

/** `body` with each of its promised values (a drawing's PNG, still being encoded) awaited. */
async function settled(body) {
  if (body === undefined || !Object.values(body).some((v) => v instanceof Promise)) return body;
  const entries = await Promise.all(Object.entries(body).map(async ([k, v]) => [k, await v]));
  return Object.fromEntries(entries);
}

/** JSON from `url`; `body` (an object, whose values may be promises) is POSTed as JSON;
 * `method` another verb (DELETE). Throws HttpError or AbortError. */
export async function request(url, { body, signal, method } = {}) {
  const release = busy();
  try {
    body = await settled(body);
    for (let attempt = 1; ; attempt++) {
      const init = body === undefined ? { signal, method }
        : { signal, method: method || "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
      const r = await fetch(url, init);
      // Busy (a full queue) says when to come back; any other 503 (no test data) is final.
      const after = Number(r.headers.get("Retry-After"));
      if (r.status === 503 && after > 0 && attempt < TRIES) {
        await sleep(Math.min(after * 1000, 5000), signal);
        continue;
      }
      if (!r.ok) throw new HttpError(r.status, r.status === 503 && after > 0 ? "server busy, try again" : await detail(r));
      return await r.json();
    }
  } finally {
    release();
  }
}

export const getJSON = (url, options) => request(url, options);

/**
 * The latest request of one panel. `next()` aborts the one before and returns the new
 * request's signal; after every await, a panel checks `signal.aborted` before painting,
 * so an answer to a request it no longer wants is never shown.
 */
export class Latest {
  constructor() { this.controller = null; }

  next() {
    this.controller?.abort();
    this.controller = new AbortController();
    return this.controller.signal;
  }

  cancel() {
    this.controller?.abort();
    this.controller = null;
  }
}

/**
 * Predictions while the user draws: at most one in flight, and the newest drawing is
 * always sent next (no pile-up). `onResult(json, ms, tag)` gets each answer with the tag
 * it was requested with, `onError(error, tag)` each failure; `cancel()` drops the queued
 * drawing and aborts the one in flight.
 */
export class Predictor {
  constructor(onResult, onError) {
    this.onResult = onResult;
    this.onError = onError;
    this.latest = new Latest();
    this.queued = null; // {body, tag} not yet sent
    this.running = false;
    this.release = null; // busy from the first request until the queue is empty
  }

  request(body, tag) {
    this.queued = { body, tag };
    this.release ??= busy();
    if (!this.running) this._next();
  }

  cancel() {
    this.queued = null;
    this.latest.cancel();
  }

  async _next() {
    const job = this.queued;
    this.queued = null;
    if (!job) { this.release?.(); this.release = null; return; }
    this.running = true;
    const t0 = performance.now();
    const signal = this.latest.next();
    try {
      const json = await request("api/predict", { body: job.body, signal });
      // A newer drawing is queued: skip painting this stale answer.
      if (!signal.aborted && !this.queued) this.onResult(json, performance.now() - t0, job.tag);
    } catch (e) {
      if (!isAbort(e)) this.onError(e, job.tag);
    } finally {
      this.running = false;
      this._next();
    }
  }
}
