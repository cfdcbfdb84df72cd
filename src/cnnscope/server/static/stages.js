// The draw view's stage grids: every stage's maps, tiled, with a legend; hover names a
// channel or unit, a click opens it. `render` is a function of its arguments only: what
// it built last is remembered here, next to the container it fills, and forgotten when
// the container is emptied.
import { $, el } from "./dom.js";
import { drawLegend, drawMaps, fitLayout, fmt, makeScale, range } from "./render.js";

/**
 * Each stage's scales: per map (each its own range), per stage, or one for all. The
 * logits are never in the global scale: their range (tens) would turn every map black.
 */
function scalesFor(names, stages, mode, info) {
  const shared = names.filter((n) => info.get(n)?.kind !== "logits");
  const global = makeScale(...range(shared.flatMap((n) => stages[n].maps)));
  const out = {};
  for (const n of names) {
    const maps = stages[n].maps;
    if (mode === "global" && shared.includes(n)) out[n] = { legend: global, maps: global };
    else if (mode === "global" || mode === "stage") { const s = makeScale(...range(maps)); out[n] = { legend: s, maps: s }; }
    else out[n] = { legend: makeScale(...range(maps)), maps: maps.map((m) => makeScale(...range([m]))), perMap: true };
  }
  return out;
}

/** One line on what a stage's picture shows, from its StageInfo. */
export function describe(s) {
  if (!s) return "";
  const n = s.shape[0];
  switch (s.kind) {
    case "conv": return `${n} filters slid over the input: each map is one filter's match at every position (red: the pattern, blue: its opposite).`;
    case "act": return `${s.module} of ${s.parent}: negatives set to 0, what is left is where each filter fires.`;
    case "pool": return `${s.module}: each window keeps its strongest response, so the maps shrink and small shifts stop mattering.`;
    case "norm": return `${s.module}: ${s.parent ?? "the layer"}'s maps rescaled to a common range.`;
    case "fc": return `${n} units, each a weighted sum of the whole layer before it; a bright square is a unit that fires.`;
    case "logits": return "One score per class; the softmax of these makes the probabilities.";
    default: return `${s.module}: ${s.shape.join("×")} values.`;
  }
}

export class StagesView {
  /** `onOpen(name, tile)` is called when a tile ({index, unit}) of stage `name` is clicked. */
  constructor(container, onOpen) {
    this.container = container;
    this.onOpen = onOpen;
    this.built = null; // the key of the rows in `container`, null when it is empty
    this.stages = {};
    // A tap shows the tooltip (touch screens emulate a mouse move) and nothing moves the
    // pointer off again: a tap or a scroll anywhere else closes it.
    const close = (e) => { if (!e.target?.closest?.("canvas.grid")) $("tooltip").hidden = true; };
    document.addEventListener("pointerdown", close);
    document.addEventListener("scroll", () => { $("tooltip").hidden = true; }, { passive: true });
  }

  /**
   * Show `shown` ({model, info: Stages, stages: name → {shape, maps}}) in `view`
   * ("compact" | "pipeline") with colour scales `scale` ("map" | "stage" | "global");
   * `shown` null empties the view.
   */
  render(shown, view, scale) {
    if (!shown) {
      this.container.querySelectorAll(".stage").forEach((n) => n.remove());
      this.built = null;
      this.stages = {};
      return;
    }
    this.stages = shown.stages;
    this.info = shown.info;
    const groups = shown.info.rows(view).map((g) => g.filter((n) => n in shown.stages)).filter((g) => g.length);
    const key = `${shown.model}|${groups.map((g) => g.join(",")).join(";")}`;
    if (this.built !== key) {
      this.container.querySelectorAll(".stage").forEach((n) => n.remove());
      this.container.append(...groups.map((g) => this.row(g)));
      this.built = key;
    }
    const names = groups.flat();
    const scales = scalesFor(names, shown.stages, scale, shown.info);
    for (const name of names) {
      const fig = this.container.querySelector(`figure[data-stage="${name}"]`);
      const grid = fig.querySelector("canvas.grid");
      const s = scales[name];
      // As large as its share of the row allows, the tiles in as many columns as make
      // them largest: a layer's stages sit side by side and the draw view fits a laptop.
      const box = this.box(fig);
      const fit = fitLayout(shown.stages[name].shape, box.width, box.height);
      const layout = drawMaps(grid, shown.stages[name], s.maps, fit.layout.cols);
      grid.style.width = `${Math.floor(layout.width * fit.perValue)}px`;
      const classes = fig.querySelector(".classes");
      if (classes) classes.style.width = grid.style.width;
      grid._layout = layout;
      drawLegend(fig.querySelector(".legend canvas").getContext("2d"), s.legend);
      // Per map: every map stretched to its own range; the numbers are the layer's range.
      const legend = fig.querySelector(".legend");
      const [lo, hi] = s.perMap ? range(shown.stages[name].maps) : [s.legend.lo, s.legend.hi];
      legend.querySelector(".mode").textContent = s.perMap ? "per map; layer" : "";
      legend.title = s.perMap ? `each map runs from ${s.legend.signed ? "−|its max| to +|its max|" : "0 to its max"}; the layer's values run from ${fmt(lo)} to ${fmt(hi)}` : "";
      legend.querySelector(".lo").textContent = fmt(lo);
      legend.querySelector(".hi").textContent = fmt(hi);
    }
  }

  /** The room a figure's grid has: its share of the row's width, and a height budget. */
  box(fig) {
    // The figure's own width: its share of the row (a whole row on a phone).
    const width = Math.max(100, fig.clientWidth);
    // Two conv rows and the fc row on a 900 px high screen; never below 120 px.
    const height = Math.max(120, Math.min(320, (window.innerHeight - 280) / 2.6));
    // fc and logits: one square tile each, half the height of a conv row.
    if (this.stages[fig.dataset.stage].shape.length === 1) return { width, height: Math.max(100, height / 2) };
    return { width, height };
  }

  row(group) {
    const figures = group.map((name) => {
      const shape = this.stages[name].shape;
      const grid = el("canvas", { className: "grid", dataset: { stage: name } });
      grid.addEventListener("mousemove", (e) => this.hover(e, name));
      grid.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
      grid.addEventListener("click", (e) => {
        const t = this.tileAt(e, name);
        $("tooltip").hidden = true;
        if (t) this.onOpen(name, t);
      });
      const legend = el("span", { className: "legend" }, el("span", { className: "mode" }), el("span", { className: "lo" }),
        el("canvas", { width: 120, height: 10 }), el("span", { className: "hi" }));
      const head = el("div", { className: "stage-head" }, el("h2", { textContent: name }),
        el("span", { className: "shape", textContent: shape.join("×") }), legend);
      const info = this.info.get(name);
      const what = el("p", { className: "what", textContent: describe(info), title: describe(info) });
      const parts = [head, what, grid];
      // The logits strip: the digit each score is for, under its square.
      if (info?.kind === "logits") {
        parts.push(el("div", { className: "classes" }, ...Array.from({ length: shape[0] }, (_, k) => el("span", { textContent: String(k) }))));
      }
      return el("figure", { dataset: { stage: name, kind: info?.kind ?? "other" } }, ...parts);
    });
    return el("div", { className: "stage" }, el("div", { className: "row" }, ...figures));
  }

  /** The tile under the pointer: {index: map, unit: vector unit or null}, or null. */
  tileAt(e, name) {
    const layout = e.currentTarget._layout;
    const r = e.currentTarget.getBoundingClientRect();
    const x = ((e.clientX - r.left) / r.width) * layout.width;
    const y = ((e.clientY - r.top) / r.height) * layout.height;
    if (this.stages[name].shape.length === 1) {
      const unit = Math.floor(y) * layout.tw + Math.floor(x);
      return { index: 0, unit: unit < this.stages[name].shape[0] ? unit : null };
    }
    const col = Math.floor(x / (layout.tw + layout.gap)), row = Math.floor(y / (layout.th + layout.gap));
    const index = row * layout.cols + col;
    // the position inside the map (a click on the gap counts for the map's edge)
    const ty = Math.min(Math.floor(y) - row * (layout.th + layout.gap), layout.th - 1);
    const tx = Math.min(Math.floor(x) - col * (layout.tw + layout.gap), layout.tw - 1);
    return index < layout.count ? { index, unit: null, y: Math.max(0, ty), x: Math.max(0, tx) } : null;
  }

  hover(e, name) {
    const t = this.tileAt(e, name);
    const tip = $("tooltip");
    if (!t) { tip.hidden = true; return; }
    const map = this.stages[name].maps[t.index];
    const [lo, hi] = range([map]);
    tip.textContent = t.unit !== null
      ? `${name} unit ${t.unit}: ${fmt(map[t.unit])}\nlayer min ${fmt(lo)}, max ${fmt(hi)}`
      : `${name} channel ${t.index}, row ${t.y}, column ${t.x}: ${fmt(map[t.y * this.stages[name].shape[2] + t.x])}\nmin ${fmt(lo)}, max ${fmt(hi)}\nclick: enlarge, and how this value is computed`;
    tip.style.left = `${e.clientX + 12}px`;
    tip.style.top = `${e.clientY + 12}px`;
    tip.hidden = false;
  }
}
