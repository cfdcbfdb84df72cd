// The Train tab: start a run, follow it live (Server-Sent Events from /api/runs/{id}/events),
// stop and resume it. What can be trained, with which recipes and up to how many steps,
// comes from /api/training; a run's status, steps and speed from the server's events.
import { getJSON, isAbort, request } from "./api.js";
import { b64bytes, decodeFilter, digitAt } from "./codec.js";
import { $, el } from "./dom.js";
import { digitCanvas } from "./render.js";

const TRAIN = "#4a90d9", VALIDATION = "#f5a524";
const PAD = { left: 44, right: 10, top: 10, bottom: 24 };
const ACTIVE = new Set(["queued", "running"]);
// The class images' method: plain gradient ascent, the cheapest (~2 s for ten on one core,
// a quarter of "regularized"), rendered by the server once per checkpoint and cached.
const CLASS_METHOD = "plain";
const CLASS_POLL_MS = 1000;

/**
 * Curves into `ctx`: each series {points: [[x, y]], colour, dots} over x in [0, xMax] and
 * y in [lo, hi]; axes with a few ticks. Pure: everything it draws comes from its arguments.
 */
export function drawCurves(ctx, series, xMax, [lo, hi], format = (v) => v.toFixed(2)) {
  const { width: w, height: h } = ctx.canvas;
  const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
  const X = (x) => PAD.left + (x / (xMax || 1)) * pw;
  const Y = (y) => PAD.top + (1 - (y - lo) / (hi - lo || 1)) * ph;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#3a414c";
  ctx.fillStyle = "#9aa3ad";
  ctx.font = "11px system-ui";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    ctx.beginPath(); ctx.moveTo(PAD.left, Y(v)); ctx.lineTo(w - PAD.right, Y(v)); ctx.stroke();
    ctx.fillText(format(v), PAD.left - 4, Y(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const x = Math.round((xMax * i) / 4);
    ctx.fillText(String(x), X(x), h - PAD.bottom + 4);
  }
  for (const s of series) {
    ctx.strokeStyle = ctx.fillStyle = s.colour;
    ctx.lineWidth = 2;
    if (s.dots) {
      for (const [x, y] of s.points) { ctx.beginPath(); ctx.arc(X(x), Y(y), 3.5, 0, 2 * Math.PI); ctx.fill(); }
      continue;
    }
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
  }
}

/** Seconds as "1 min 05 s" or "12 s". */
export function duration(s) {
  if (s == null) return "";
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

export class TrainView {
  /**
   * `onCheckpoint(runId, modelId)`: new weights (the model picker gains or updates the
   * run); `onSnapshot(runId)`: a new representation snapshot (the Embedding tab grows);
   * `onDelete(runId)`: a run was deleted (it leaves the model picker).
   */
  constructor({ onCheckpoint, onSnapshot, onDelete }) {
    this.onCheckpoint = onCheckpoint;
    this.onDelete = onDelete;
    this.onSnapshot = onSnapshot;
    this.training = null; // /api/training
    this.run = null; // the run followed: {id, total}
    this.records = new Map(); // `${split}/${step}` → metrics record
    this.status = null;
    this.source = null; // the EventSource
    this.filters = null; // the newest filter strip's request
    this.classesWanted = null; // {model, stage}: the newest checkpoint's class images
    this.classesBusy = false; // one class-image render asked at a time
    this.drawPending = false;
    $("train-form").onsubmit = (e) => { e.preventDefault(); this.start(); };
    $("train-stop").onclick = () => this.act("stop");
    $("train-resume").onclick = () => this.act("resume");
    $("train-delete").onclick = () => this.remove();
  }

  /** Fill the form from the server once; list the runs. */
  async show() {
    if (!this.training) {
      try {
        this.training = await getJSON("api/training");
      } catch (e) { this.say(e.message); return; }
      $("train-model").replaceChildren(...this.training.models.map((m) => new Option(m, m)));
      $("train-model").value = this.training.models.includes("hvass") ? "hvass" : this.training.models[0];
      $("train-recipe").replaceChildren(...this.training.recipes.map((r) => new Option(r, r)));
      $("train-length").max = String(this.training.max_steps);
      if (!this.training.enabled) this.say(`Training from this page is off: ${this.training.reason}`);
    }
    this.buttons();
    await this.listRuns();
  }

  say(text) { $("train-status").textContent = text; }

  async listRuns() {
    let runs;
    try { runs = await getJSON("api/runs"); } catch (e) { if (!isAbort(e)) this.say(e.message); return; }
    $("train-runs").replaceChildren(...runs.slice().reverse().map((r) => {
      const li = el("li", { dataset: { run: r.id, status: r.status }, className: r.id === this.run?.id ? "current" : "" },
        el("span", { className: "st", textContent: `${r.status} · ${r.step}/${r.total_steps}` }), r.id);
      li.onclick = () => this.follow(r.id);
      return li;
    }));
    // Nothing followed yet: follow the run that trains, if one does.
    if (!this.run) {
      const active = runs.find((r) => ACTIVE.has(r.status));
      if (active) this.follow(active.id);
    }
  }

  async start() {
    const unit = $("train-unit").value;
    const length = Number($("train-length").value);
    const body = {
      model: $("train-model").value,
      recipe: $("train-recipe").value,
      seed: Number($("train-seed").value),
      [unit]: unit === "steps" ? Math.round(length) : length,
    };
    try {
      const started = await request("api/runs", { body });
      this.follow(started.id);
      this.listRuns();
    } catch (e) { this.say(e.message); }
  }

  /** Stop or resume the followed run. */
  async act(what) {
    if (!this.run) return;
    const id = this.run.id;
    try {
      await request(`api/runs/${encodeURIComponent(id)}/${what}`, { body: {} });
    } catch (e) { this.say(e.message); return; }
    if (what === "resume") this.follow(id, true);
    this.listRuns();
  }

  /** Delete the followed run (not while it trains), after asking. */
  async remove() {
    if (!this.run || ACTIVE.has(this.status)) return;
    const id = this.run.id;
    if (!window.confirm(`Delete run ${id}? Its weights, curves and snapshots are removed from disk.`)) return;
    try {
      await request(`api/runs/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (e) { this.say(e.message); return; }
    this.source?.close();
    this.source = null;
    this.run = null;
    this.status = null;
    this.records.clear();
    for (const box of ["train-filters", "train-filters-note", "train-classes", "train-classes-note"]) $(box).replaceChildren();
    this.classesWanted = null;
    this.drawCharts();
    this.buttons();
    this.say(`deleted ${id}`);
    this.onDelete?.(id);
    this.listRuns();
  }

  /** Follow run `id`: replay what it has written, then its events as they come. */
  follow(id, again = false) {
    if (this.run?.id === id && this.source && !again) return;
    this.source?.close();
    if (this.run?.id !== id) {
      this.records.clear();
      this.status = null;
      $("train-filters").replaceChildren();
      $("train-filters-note").textContent = "";
      $("train-classes").replaceChildren();
      $("train-classes-note").textContent = "";
      this.classesWanted = null;
    }
    this.run = { id, total: this.run?.id === id ? this.run.total : 0, model: null };
    for (const li of $("train-runs").children) li.classList.toggle("current", li.dataset.run === id);
    const source = this.source = new EventSource(`api/runs/${encodeURIComponent(id)}/events`);
    // (EventSource's own "error", a lost connection, has no data: it reconnects by itself.)
    const on = (name, f) => source.addEventListener(name, (e) => { if (this.source === source && e.data) f(JSON.parse(e.data)); });
    on("metrics", (r) => { this.records.set(`${r.split}/${r.step}`, r); this.schedule(); });
    on("progress", (p) => this.progress(p));
    on("snapshot", () => this.onSnapshot(id));
    on("checkpoint", (c) => { this.run.model = c.model; this.onCheckpoint(id, c.model); this.drawFilters(c.model); });
    on("done", () => this.listRuns());
    on("error", (e) => this.say(`run ${id} failed: ${e.message}`));
  }

  progress(p) {
    this.status = p.status;
    this.run.total = p.total_steps;
    const status = $("train-status");
    status.dataset.status = p.status;
    status.dataset.step = String(p.step);
    const speed = p.steps_per_s ? ` · ${p.steps_per_s.toFixed(1)} steps/s (${p.images_per_s.toLocaleString()} images/s)` : "";
    const left = p.seconds_left != null ? ` · ${duration(p.seconds_left)} left` : "";
    this.say(`${this.run.id}: ${p.status} · step ${p.step} of ${p.total_steps}${p.status === "running" ? speed + left : ""}`);
    const li = [...$("train-runs").children].find((x) => x.dataset.run === this.run.id);
    if (li) {
      li.dataset.status = p.status;
      li.querySelector(".st").textContent = `${p.status} · ${p.step}/${p.total_steps}`;
    }
    if (!ACTIVE.has(p.status)) {
      this.source?.close(); // it ended: no reconnecting to a finished stream
      this.source = null;
      this.listRuns();
    }
    this.buttons();
    this.schedule();
  }

  buttons() {
    const on = this.training?.enabled;
    $("train-start").disabled = !on || ACTIVE.has(this.status);
    $("train-stop").disabled = !on || !ACTIVE.has(this.status);
    $("train-resume").disabled = !on || !["stopped", "failed"].includes(this.status);
    $("train-delete").disabled = !on || !this.run || !this.status || ACTIVE.has(this.status);
  }

  schedule() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => { this.drawPending = false; this.drawCharts(); });
  }

  drawCharts() {
    const all = [...this.records.values()].sort((a, b) => a.step - b.step);
    const train = all.filter((r) => r.split === "train"), val = all.filter((r) => r.split === "validation");
    const xMax = Math.max(this.run?.total || 0, ...all.map((r) => r.step), 1);
    const ce = (rs) => rs.map((r) => [r.step, r.cross_entropy]);
    const acc = (rs) => rs.map((r) => [r.step, r.accuracy]);
    const top = Math.max(0.5, ...all.map((r) => r.cross_entropy));
    drawCurves($("train-loss").getContext("2d"), [
      { points: ce(train), colour: TRAIN }, { points: ce(val), colour: VALIDATION, dots: true },
    ], xMax, [0, Math.ceil(top * 2) / 2]);
    drawCurves($("train-acc").getContext("2d"), [
      { points: acc(train), colour: TRAIN }, { points: acc(val), colour: VALIDATION, dots: true },
    ], xMax, [0, 1], (v) => `${Math.round(v * 100)} %`);
    // For tests and the curious: how many points each chart holds, and the last step.
    $("train-loss").dataset.points = String(train.length);
    $("train-acc").dataset.points = String(val.length);
  }

  /** The first conv stage's filters of the newest checkpoint, one small tile each. */
  async drawFilters(model) {
    const ask = this.filters = {};
    try {
      const info = await getJSON(`api/models/${encodeURIComponent(model)}`);
      const logits = info.stages.find((s) => s.kind === "logits");
      if (logits) this.drawClasses(model, logits.name, info.metrics.steps, info.input_shape.slice(-2));
      const conv = info.stages.find((s) => s.kind === "conv"); // the server says which are convs
      if (!conv) { $("train-filters-note").textContent = `${model} has no conv layer`; return; }
      const f = await getJSON(`api/models/${encodeURIComponent(model)}/filters/${conv.name}`);
      if (this.filters !== ask) return;
      const [out, , kh, kw] = f.shape;
      const tiles = [];
      for (let c = 0; c < out; c++) {
        const w = decodeFilter(f, c).maps[0]; // the first input channel: the image's
        const cv = el("canvas", { width: kw, height: kh, title: `${conv.name}:${c}` });
        const ctx = cv.getContext("2d"), img = ctx.createImageData(kw, kh);
        w.forEach((v, i) => {
          const g = Math.round(127.5 + (v / f.scale) * 127.5); // 0 is gray; one scale for all
          img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = g;
          img.data[i * 4 + 3] = 255;
        });
        ctx.putImageData(img, 0, 0);
        tiles.push(cv);
      }
      $("train-filters").replaceChildren(...tiles);
      $("train-filters").dataset.model = model;
      $("train-filters-note").textContent =
        `${conv.name} of ${info.id} (${info.metrics.steps ?? "?"} steps): white is a positive weight, black a negative one`;
    } catch (e) {
      if (!isAbort(e)) $("train-filters-note").textContent = e.message;
    }
  }

  /**
   * The class images (each class's preferred image) of the newest checkpoint. One render
   * is asked at a time: checkpoints that land while one renders are skipped, the newest
   * is asked next, so the strip refreshes at most once a checkpoint.
   */
  async drawClasses(model, stage, steps, size) {
    this.classesWanted = { model, stage, steps, size }; // size: [h, w], the model's input
    if (this.classesBusy) return;
    this.classesBusy = true;
    try {
      while (this.classesWanted) {
        const want = this.classesWanted;
        this.classesWanted = null;
        const url = `api/features/${encodeURIComponent(want.model)}/${encodeURIComponent(want.stage)}?method=${CLASS_METHOD}`;
        let job = await getJSON(url);
        while (job.status === "running" && this.run?.model === want.model && !this.classesWanted) {
          await new Promise((r) => setTimeout(r, CLASS_POLL_MS));
          job = await getJSON(url);
        }
        if (this.run?.model !== want.model) return; // another run is followed now
        if (job.status === "failed") { $("train-classes-note").textContent = job.error; continue; }
        if (job.status !== "ready") continue; // a newer checkpoint came: ask for it
        const pixels = b64bytes(job.images);
        $("train-classes").replaceChildren(...Array.from({ length: job.total }, (_, c) =>
          Object.assign(digitCanvas(digitAt(pixels, c, want.size), want.size), { title: `class ${c}` })));
        $("train-classes").dataset.model = want.model;
        $("train-classes").dataset.step = String(want.steps ?? "");
        $("train-classes-note").textContent =
          `what each class's output likes best at step ${want.steps ?? "?"} (${CLASS_METHOD} gradient ascent on ${want.stage})`;
      }
    } catch (e) {
      if (!isAbort(e)) $("train-classes-note").textContent = e.message;
    } finally {
      this.classesBusy = false;
    }
  }
}
