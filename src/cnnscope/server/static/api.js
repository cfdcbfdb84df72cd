// Talking to the server. `Predictor` keeps at most one request in flight and always
// sends the newest drawing next: no pile-up while the user keeps drawing.

export async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
  return r.json();
}

export class Predictor {
  constructor(onResult, onError) {
    this.onResult = onResult;
    this.onError = onError;
    this.inFlight = false;
    this.pending = null; // newest body not yet sent
  }

  /** Queue `body`; replaces any queued body that has not been sent. */
  request(body) {
    this.pending = body;
    if (!this.inFlight) this._next();
  }

  async _next() {
    const body = this.pending;
    if (!body) return;
    this.pending = null;
    this.inFlight = true;
    const t0 = performance.now();
    try {
      const r = await fetch("api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = await r.json();
      if (!r.ok) throw new Error(typeof json.detail === "string" ? json.detail : JSON.stringify(json.detail));
      // A newer drawing is queued: skip painting this stale answer.
      if (!this.pending) this.onResult(json, performance.now() - t0);
    } catch (e) {
      this.onError(e);
    } finally {
      this.inFlight = false;
      if (this.pending) this._next();
    }
  }
}
