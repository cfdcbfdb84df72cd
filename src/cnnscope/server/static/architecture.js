// The Architecture view: the served model as a diagram drawn from its StageInfo — one box
// per stage (kind, module, output shape, parameter count) joined by arrows — with a live
// thumbnail of the current drawing's maps in each box. A click on a box shows that stage
// in the draw view.
import { Latest, getJSON, isAbort } from "./api.js";
import { $, el } from "./dom.js";
import { drawGray, drawMaps, makeScale, range } from "./render.js";

const KIND_WORDS = {
  conv: "convolution: filters slid over the input",
  act: "activation: keeps what fires",
  pool: "pooling: the strongest of each window",
  norm: "normalisation",
  fc: "fully connected: every input to every unit",
  logits: "one score per class",
  other: "",
};

const prod = (shape) => shape.reduce((a, b) => a * b, 1);

/**
 * Parameters of each stage from what the page can see: a conv's weight shape (its filters,
 * from `/api/models/{id}/filters/{stage}`) and a fully connected stage's input and output
 * sizes (the stage before it and its own shape), each with one bias per output unit.
 * Activations and pools have none. Returns name → count, or null where it cannot tell.
 */
export function stageParameters(info, filterShapes) {
  const out = {};
  let prev = info.inputShape;
  for (const s of info.list) {
    if (s.kind === "conv") {
      const w = filterShapes[s.name];
      out[s.name] = w ? prod(w) + w[0] : null;
    } else if (s.kind === "fc" || s.kind === "logits") out[s.name] = prod(prev) * s.shape[0] + s.shape[0];
    else if (s.kind === "act" || s.kind === "pool") out[s.name] = 0;
    else out[s.name] = null;
    prev = s.shape;
  }
  return out;
}

export class ArchitectureView {
  /** `onPick(name)`: a box was clicked. */
  constructor(container, onPick) {
    this.container = container;
    this.onPick = onPick;
    this.latest = new Latest();
    this.model = null;
    this.filters = {}; // model → {conv: weight shape}
  }

  /** Show `model` ({id, parameters}) with `info` (Stages); `shown` as the draw view's, or null. */
  async show(model, info, shown) {
    if (this.model !== model.id) {
      this.model = model.id;
      this.build(model, info);
      this.filters[model.id] ??= null;
      const signal = this.latest.next();
      const status = $("arch-status");
      status.textContent = "counting parameters…";
      status.classList.add("progress");
      try {
        if (!this.filters[model.id]) {
          const shapes = {};
          for (const s of info.list.filter((t) => t.kind === "conv")) {
            const f = await getJSON(`api/models/${encodeURIComponent(model.id)}/filters/${s.name}`, { signal });
            shapes[s.name] = f.shape;
          }
          this.filters[model.id] = shapes;
        }
        if (signal.aborted) return;
        this.counts(model, info, this.filters[model.id]);
        status.textContent = "";
      } catch (e) {
        if (!isAbort(e)) status.textContent = `parameter counts unavailable: ${e.message}`;
      } finally {
        if (!signal.aborted) status.classList.remove("progress");
      }
    }
    this.thumbnails(shown);
  }

  build(model, info) {
    const [h, w] = info.inputSize;
    const boxes = [this.box({ name: "input", kind: "input", module: "image", shape: info.inputShape }, `the drawing, ${h}×${w}`)];
    for (const s of info.list) boxes.push(el("span", { className: "arrow", textContent: "→", ariaHidden: "true" }), this.box(s, KIND_WORDS[s.kind] ?? ""));
    $("arch-title").textContent = `${model.id}: ${model.description ?? ""}`;
    this.container.replaceChildren(...boxes);
  }

  box(s, words) {
    const thumb = el("canvas", { className: "thumb", width: 28, height: 28 });
    const b = el("button", { className: `arch-box kind-${s.kind}`, type: "button", title: `show ${s.name} in the draw view` },
      el("strong", { textContent: s.name }), el("span", { className: "kind", textContent: `${s.kind} · ${s.module}` }),
      el("span", { className: "shape", textContent: s.shape.join("×") }), thumb,
      el("span", { className: "params", textContent: s.kind === "input" ? "" : "… parameters" }),
      el("span", { className: "words", textContent: words }));
    b.dataset.stage = s.name;
    b.dataset.kind = s.kind;
    if (s.kind !== "input") b.onclick = () => this.onPick(s.name);
    else b.onclick = () => this.onPick(null);
    return b;
  }

  counts(model, info, shapes) {
    const counts = stageParameters(info, shapes);
    const total = Object.values(counts).reduce((a, b) => a + (b ?? 0), 0);
    for (const [name, n] of Object.entries(counts)) {
      const box = this.container.querySelector(`.arch-box[data-stage="${name}"] .params`);
      box.textContent = n === null ? "parameters: ?" : n === 0 ? "no parameters" : `${n.toLocaleString("en")} parameters`;
      box.parentNode.dataset.params = n === null ? "" : String(n);
    }
    const same = total === model.parameters;
    $("arch-total").textContent = `${model.parameters.toLocaleString("en")} parameters in all` +
      (same ? "" : ` (the boxes count ${total.toLocaleString("en")}: some layers have parameters this diagram does not see)`);
  }

  /** Each box's thumbnail: the most active map of its stage (the vector for fc, logits). */
  thumbnails(shown) {
    for (const b of this.container.querySelectorAll(".arch-box")) {
      const c = b.querySelector("canvas.thumb");
      const name = b.dataset.stage;
      if (!shown) { c.getContext("2d").clearRect(0, 0, c.width, c.height); continue; }
      if (name === "input") {
        const [h, w] = shown.inputSize;
        c.width = w; c.height = h;
        drawGray(c.getContext("2d"), shown.input, w, h);
        continue;
      }
      const stage = shown.stages[name];
      if (!stage) continue;
      if (stage.shape.length === 3) {
        let best = 0, top = -Infinity;
        stage.maps.forEach((m, i) => { const hi = range([m])[1]; if (hi > top) { top = hi; best = i; } });
        const map = stage.maps[best];
        drawMaps(c, { shape: [1, ...stage.shape.slice(1)], maps: [map] }, makeScale(...range([map])));
        b.title = `show ${name} in the draw view (thumbnail: channel ${best}, its most active)`;
      } else {
        drawMaps(c, stage, makeScale(...range(stage.maps)));
      }
    }
  }
}
