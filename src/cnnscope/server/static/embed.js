// The Embedding view: every test-subset digit as a point, frame by frame over training.
import { Latest, getJSON, isAbort } from "./api.js";
import { progress } from "./progress.js";
import { b64bytes } from "./codec.js";
import { $ } from "./dom.js";
import { drawDigit, fitCanvas } from "./render.js";

// tab10, the digits' colours in every cnnscope figure
export const DIGIT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SPAN = 18; // coords are scaled to an RMS radius of 10; ±18 holds nearly all points
const TWEEN_MS = 700;

/** Points at fractional frame t: linear between the two neighbouring frames. */
export function pointsAt(frames, t) {
  const i = Math.min(Math.floor(t), frames.length - 1), j = Math.min(i + 1, frames.length - 1);
  const f = t - i, a = frames[i].coords, b = frames[j].coords;
  return a.map((p, k) => [p[0] + (b[k][0] - p[0]) * f, p[1] + (b[k][1] - p[1]) * f]);
}

export class EmbeddingView {
  constructor(onPick) {
    this.onPick = onPick;
    this.data = null;
    this.model = null;
    this.live = null; // the training run followed (see follow), or null
    this.t = 0; // the frame shown (fractional while moving)
    this.anim = null;
    this.playing = null; // the timer between two frames while playing
    this.points = [];
    this.digits = new Map(); // test index → pixels
    this.latest = new Latest(); // the model's layouts
    this.hovered = new Latest(); // the digit under the pointer
    const c = $("scatter");
    c.addEventListener("mousemove", (e) => this.hover(e));
    c.addEventListener("click", (e) => this.click(e));
    $("embed-frame").addEventListener("input", (e) => { this.stop(); this.moveTo(Number(e.target.value)); });
    $("embed-play").onclick = () => this.play();
  }

  /** Show `model`'s layouts; `available` false (ModelInfo.embedding) says it has none. */
  async show(model, available = true) {
    if (this.model === model && this.data) return;
    this.model = model;
    this.data = null;
    this.stop();
    const signal = this.latest.next();
    $("embed-label").textContent = "";
    // A model's first layout runs t-SNE on every training snapshot: about a minute.
    this.done?.(); // a progress of the model before
    const done = this.done = progress($("embed-metrics"), `laying out ${model}'s test digits at every training snapshot (the first time takes up to a minute)…`);
    for (const id of ["scatter", "class-weights", "class-means"]) {
      const ctx = $(id).getContext("2d");
      ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    }
    if (available === false) {
      done();
      this.latest.cancel();
      $("embed-label").textContent = "";
      $("embed-metrics").textContent = `${model} has no training snapshots to lay out`;
      return;
    }
    let data;
    try {
      data = await getJSON(`api/embedding/${encodeURIComponent(model)}`, { signal });
    } catch (e) {
      if (isAbort(e)) return;
      done();
      $("embed-label").textContent = "";
      $("embed-metrics").textContent = e.message;
      return;
    }
    if (signal.aborted) return;
    done();
    $("embed-metrics").textContent = "";
    this.data = data;
    const n = this.data.frames.length;
    $("embed-frame").max = String(n - 1);
    $("embed-frame").value = String(n - 1);
    this.t = n - 1;
    this.draw();
    this.drawClassVectors();
  }

  drawClassVectors() {
    if (this.data.classes.weights) this.drawClasses($("class-weights"), this.data.classes.weights);
    if (this.data.classes.means) this.drawClasses($("class-means"), this.data.classes.means);
  }

  /**
   * Follow a training run (the Train tab calls this at each new snapshot): its layouts so
   * far, the new frames appended (the server lays each out from the last, so the frames
   * shown never move) and the scatter moved on to the newest. `#scatter[data-frames]`
   * counts them. The model picker's next change ends it (`unfollow`).
   */
  async follow(runId) {
    if (this.live !== runId) {
      this.live = runId;
      this.model = null;
      this.data = null;
      this.stop();
      this.latest.cancel();
    }
    const signal = (this.liveRequest ??= new Latest()).next();
    let data;
    try {
      data = await getJSON(`api/runs/${encodeURIComponent(runId)}/embedding`, { signal });
    } catch (e) {
      if (!isAbort(e) && this.live === runId && !this.data) $("embed-metrics").textContent = e.message;
      return;
    }
    if (signal.aborted || this.live !== runId) return;
    const had = this.data ? this.data.frames.length : 0, n = data.frames.length;
    if (n <= had) return;
    this.data = data;
    $("scatter").dataset.frames = String(n);
    $("embed-frame").max = String(n - 1);
    $("embed-frame").value = String(n - 1);
    this.drawClassVectors();
    if (had === 0) { this.t = n - 1; this.draw(); } else { this.stop(); this.moveTo(n - 1); }
  }

  unfollow() {
    this.live = null;
    this.liveRequest?.cancel();
  }

  toCanvas([x, y]) {
    const c = $("scatter");
    return [((x + SPAN) / (2 * SPAN)) * c.width, ((SPAN - y) / (2 * SPAN)) * c.height];
  }

  draw() {
    const d = this.data;
    const ctx = $("scatter").getContext("2d");
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    this.points = pointsAt(d.frames, this.t).map((p) => this.toCanvas(p));
    this.points.forEach(([x, y], k) => {
      ctx.fillStyle = DIGIT_COLOURS[d.labels[k] % DIGIT_COLOURS.length];
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    // Each class's name (the server's, from /api/models) at its median point.
    ctx.font = "bold 18px system-ui";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const c of [...new Set(d.labels)].sort((a, b) => a - b)) {
      const pts = this.points.filter((_, k) => d.labels[k] === c);
      const med = (v) => v.sort((a, b) => a - b)[v.length >> 1];
      const x = med(pts.map((p) => p[0])), y = med(pts.map((p) => p[1]));
      const name = this.classes?.[c] ?? String(c);
      const w = Math.max(20, ctx.measureText(name).width + 8);
      ctx.fillStyle = "#000b";
      ctx.fillRect(x - w / 2, y - 11, w, 22);
      ctx.fillStyle = DIGIT_COLOURS[c % DIGIT_COLOURS.length];
      ctx.fillText(name, x, y);
    }
    const f = d.frames[Math.round(this.t)];
    $("embed-label").textContent =
      `step ${f.step} (epoch ${f.epoch.toFixed(2)}): accuracy ${(f.subset_accuracy * 100).toFixed(1)} %`;
    $("embed-metrics").textContent = (this.live ? `Training run ${this.live}, frames added as it learns: ` : "") +
      `${d.method} of ${d.stage}, ${d.labels.length} test digits${d.aligned ? ", each frame started from the previous" : ""}. ` +
      `10-NN accuracy: ${(f.knn_original * 100).toFixed(1)} % in ${d.stage}, ${(f.knn_2d * 100).toFixed(1)} % in 2-D; ` +
      `trustworthiness ${f.trustworthiness.toFixed(3)}.`;
  }

  /** Stop playing and moving; `#scatter[data-moving]` is gone once nothing moves. */
  stop() {
    clearTimeout(this.playing);
    cancelAnimationFrame(this.anim);
    delete $("scatter").dataset.moving;
  }

  /** Tween from the current frame to `target` (smooth, interruptible). */
  moveTo(target, duration = TWEEN_MS, done) {
    cancelAnimationFrame(this.anim);
    $("scatter").dataset.moving = "true";
    const from = this.t, t0 = performance.now();
    const step = (now) => {
      const f = Math.min(1, (now - t0) / duration);
      const ease = f < 0.5 ? 2 * f * f : 1 - (-2 * f + 2) ** 2 / 2;
      this.t = from + (target - from) * ease;
      this.draw();
      if (f < 1) this.anim = requestAnimationFrame(step);
      else { this.t = target; this.draw(); delete $("scatter").dataset.moving; done?.(); }
    };
    this.anim = requestAnimationFrame(step);
  }

  play() {
    if (!this.data) return;
    const last = this.data.frames.length - 1;
    const go = (k) => {
      $("embed-frame").value = String(k);
      this.moveTo(k, TWEEN_MS, () => { if (k < last) this.playing = setTimeout(() => go(k + 1), 250); });
    };
    // From the first snapshot: show it, then move on at once.
    this.stop();
    this.t = 0;
    $("embed-frame").value = "0";
    this.draw();
    if (last > 0) go(1);
  }

  nearest(e) {
    const c = $("scatter"), r = c.getBoundingClientRect();
    const x = ((e.clientX - r.left) * c.width) / r.width, y = ((e.clientY - r.top) * c.height) / r.height;
    let best = -1, bestD = 36; // within 6 canvas pixels
    this.points.forEach(([px, py], k) => {
      const dd = (px - x) ** 2 + (py - y) ** 2;
      if (dd < bestD) { bestD = dd; best = k; }
    });
    return best;
  }

  /** The name of class `c` (set by the app from /api/models; digits by default). */
  name(c) { return this.classes?.[c] ?? String(c); }

  async digit(k, signal) {
    const index = this.data.indices[k], label = this.data.labels[k];
    if (!this.digits.has(index)) {
      const d = await getJSON(`api/test-digits/${index}`, { signal });
      this.digits.set(index, { pixels: b64bytes(d.pixels), size: d.size });
    }
    return { index, label, ...this.digits.get(index) };
  }

  async hover(e) {
    if (!this.data) return;
    const k = this.nearest(e);
    if (k < 0) return;
    const frame = this.data.frames[Math.round(this.t)];
    const signal = this.hovered.next();
    try {
      const d = await this.digit(k, signal);
      if (signal.aborted) return; // the pointer moved on to another point
      const [h, w] = d.size;
      drawDigit(fitCanvas($("hover-digit"), d.size).getContext("2d"), d.pixels, w, h);
      $("hover-text").textContent =
        `test #${d.index}: true ${this.name(d.label)}, predicted ${this.name(frame.predictions[k])} at step ${frame.step}`;
    } catch (err) {
      if (!isAbort(err)) $("hover-text").textContent = `error: ${err.message}`;
    }
  }

  async click(e) {
    if (!this.data) return;
    const k = this.nearest(e);
    if (k < 0) return;
    this.hovered.cancel();
    try {
      this.onPick(await this.digit(k));
    } catch (err) { $("hover-text").textContent = `error: ${err.message}`; }
  }

  drawClasses(canvas, xy) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = 24;
    ctx.font = "bold 15px system-ui";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    xy.forEach(([x, y], k) => {
      const cx = pad + ((x - x0) / (x1 - x0 || 1)) * (canvas.width - 2 * pad);
      const cy = canvas.height - pad - ((y - y0) / (y1 - y0 || 1)) * (canvas.height - 2 * pad);
      ctx.fillStyle = DIGIT_COLOURS[k % DIGIT_COLOURS.length];
      ctx.beginPath();
      ctx.arc(cx, cy, 11, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillStyle = "#000";
      ctx.fillText(this.name(k).slice(0, 3), cx, cy + 1);
    });
  }
}
