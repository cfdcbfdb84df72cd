// The Features view: each unit's preferred image, and the test digits that excite it.
import { Latest, getJSON, isAbort } from "./api.js";
import { b64bytes, digitAt } from "./codec.js";
import { $, el } from "./dom.js";
import { progress } from "./progress.js";
import { digitCanvas, drawDigit, drawField, fitCanvas } from "./render.js";

/**
 * A panel of the test digits that excite one unit most. It shows only the answer for the
 * unit asked last (an older answer is aborted or dropped), and carries that unit in
 * `data-stage` / `data-unit` once its digits are drawn.
 */
export class TopExamples {
  constructor(container) {
    this.container = container;
    this.latest = new Latest();
  }

  /**
   * Show `stage:unit`'s digits; resolves once drawn (or dropped for a newer unit).
   * `fields`: outline each digit's receptive field (false for units that see everything).
   */
  async show(model, stage, unit, { fields = true } = {}) {
    const signal = this.latest.next();
    const c = this.container;
    c.replaceChildren();
    delete c.dataset.stage;
    delete c.dataset.unit;
    c.setAttribute("aria-busy", "true");
    // Scoring 10,000 digits for a new layer takes 1–10 s; later units of it are at once.
    const note = el("p", { className: "note" });
    c.replaceChildren(note);
    const done = progress(note, `finding the test digits ${stage}:${unit} likes most…`);
    try {
      const top = await getJSON(`api/top-examples/${encodeURIComponent(model)}/${stage}/${unit}`, { signal });
      if (signal.aborted) return;
      c.replaceChildren(...top.map((t) => {
        const digit = digitCanvas(b64bytes(t.pixels), t.size); // the data set's image size
        // the receptive field of the strongest position; null where a unit sees everything
        if (fields && t.field) drawField(digit.getContext("2d"), t.field);
        return el("figure", {}, digit, el("figcaption", { textContent: `#${t.index} (${t.label}) ${t.score.toFixed(2)}` }));
      }));
      Object.assign(c.dataset, { stage, unit: String(unit) });
    } catch (e) {
      if (isAbort(e)) return;
      c.replaceChildren(el("p", { className: "note", textContent: `error: ${e.message}` }));
    } finally {
      done();
      if (!signal.aborted) c.removeAttribute("aria-busy");
    }
  }

  clear() {
    this.latest.cancel();
    this.container.replaceChildren();
    delete this.container.dataset.stage;
    delete this.container.dataset.unit;
    this.container.removeAttribute("aria-busy");
  }
}

/**
 * `stage:unit`'s preferred image (`size` [h, w] uint8: the model's input) if rendered, else
 * null (and it starts rendering).
 */
export async function preferredImage(model, stage, unit, size, signal) {
  const job = await getJSON(`api/features/${encodeURIComponent(model)}/${stage}`, { signal });
  return job.status === "ready" ? digitAt(b64bytes(job.images), unit, size) : null;
}

export class FeaturesView {
  constructor() {
    this.model = null;
    this.key = null;
    this.images = null;
    this.timer = null;
    this.latest = new Latest();
    this.top = new TopExamples($("feat-top"));
    $("feat-stage").onchange = () => this.load();
    $("feat-method").onchange = () => this.load();
    // The methods and what each trades: the server's list (analysis/features/methods.py).
    this.trades = {};
    this.methods = getJSON("api/health").then((h) => {
      $("feat-method").replaceChildren(...h.features.map((f) => new Option(f.name, f.id)));
      this.trades = Object.fromEntries(h.features.map((f) => [f.id, f.trade]));
    }).catch((e) => { $("feat-status").textContent = `error: ${e.message}`; });
  }

  /** Show `model`'s galleries; `info` is its Stages. */
  show(model, info) {
    if (this.model !== model) {
      this.model = model;
      this.info = info;
      $("feat-stage").replaceChildren(...info.featureStages().map((s) => new Option(s, s)));
      this.top.clear();
      $("feat-unit-title").textContent = "Top examples";
      $("feat-unit-image").hidden = true;
    }
    this.load();
  }

  async load() {
    await this.methods;
    const stage = $("feat-stage").value, method = $("feat-method").value;
    const key = `${this.model}/${stage}/${method}`;
    if (key === this.key && this.images) return;
    this.key = key;
    this.images = null;
    clearTimeout(this.timer);
    const signal = this.latest.next();
    $("feat-gallery").replaceChildren();
    $("feat-trade").textContent = this.trades[method] ? `${method}: ${this.trades[method]}.` : "";
    $("feat-check").textContent = "";
    // One progress at a time in the status: a new load ends the one before.
    this.done?.();
    this.done = progress($("feat-status"), "asking for the preferred images…");
    const done = () => this.done();
    const poll = async () => {
      let job;
      try {
        job = await getJSON(`api/features/${encodeURIComponent(this.model)}/${stage}?method=${method}`, { signal });
      } catch (e) {
        if (!isAbort(e)) { done(); $("feat-status").textContent = `error: ${e.message}`; }
        return;
      }
      if (signal.aborted) return;
      done();
      if (job.status === "ready") {
        const dead = job.dead ?? [];
        $("feat-status").textContent = `${job.total} units` +
          (dead.length ? `, ${dead.length} dead: they never fire on the test set (struck through)` : "");
        this.images = b64bytes(job.images);
        this.render(stage, job.total, new Set(dead));
        if (stage === "logits") this.check(method, signal);
      } else if (job.status === "failed") {
        $("feat-status").textContent = `failed: ${job.error}`;
      } else {
        this.done = progress($("feat-status"), `rendering ${job.done} of ${job.total} units (about a minute for a layer)…`);
        this.timer = setTimeout(poll, 500);
      }
    };
    poll();
  }

  /** Say how recognisable and faithful the class images shown are (judged from outside). */
  async check(method, signal) {
    const line = $("feat-check");
    line.textContent = "judging these class images with classifiers trained on MNIST pixels…";
    try {
      const c = await getJSON(`api/feature-check/${encodeURIComponent(this.model)}?method=${method}`, { signal });
      if (!signal.aborted) line.textContent = `These class images: ${c.sentence}.`;
    } catch (e) {
      if (!isAbort(e) && !signal.aborted) line.textContent = `not judged: ${e.message}`;
    }
  }

  render(stage, total, dead = new Set()) {
    $("feat-gallery").replaceChildren(...Array.from({ length: total }, (_, u) => {
      // A dead unit's image shows what would excite it, but nothing in the data ever does.
      const fig = el("figure", { dataset: { unit: u }, className: dead.has(u) ? "dead" : "",
        title: dead.has(u) ? `unit ${u} never fires on the 10,000 test digits: a dead unit` : "" },
        digitCanvas(digitAt(this.images, u, this.info.inputSize), this.info.inputSize),
        el("figcaption", { textContent: dead.has(u) ? `${u} dead` : String(u) }));
      fig.onclick = () => this.openUnit(stage, u, fig);
      return fig;
    }));
  }

  openUnit(stage, unit, fig) {
    document.querySelectorAll("#feat-gallery figure.selected").forEach((f) => f.classList.remove("selected"));
    fig.classList.add("selected");
    $("feat-unit-title").textContent = `${stage}:${unit}: its image and the 9 test digits it likes most`;
    const img = $("feat-unit-image");
    const [h, w] = this.info.inputSize; // preferred images are the model's input size
    drawDigit(fitCanvas(img, [h, w]).getContext("2d"), digitAt(this.images, unit, [h, w]), w, h);
    img.hidden = false;
    return this.top.show(this.model, stage, unit, { fields: !this.info.seesAll(stage) });
  }
}
