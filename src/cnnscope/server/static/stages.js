// The draw view's stage grids: every stage's maps, tiled, with a legend; hover names a
// channel or unit, a click opens it. `render` is a function of its arguments only: what
// it built last is remembered here, next to the container it fills, and forgotten when
// the container is emptied.
import { $, el } from "./dom.js";
import { drawLegend, drawMaps, fmt, makeScale, range } from "./render.js";

/** Each stage's scales: per map (each its own range), per stage, or one for all. */
function scalesFor(names, stages, mode) {
  const global = makeScale(...range(names.flatMap((n) => stages[n].maps)));
  const out = {};
  for (const n of names) {
    const maps = stages[n].maps;
    if (mode === "global") out[n] = { legend: global, maps: global };
    else if (mode === "stage") { const s = makeScale(...range(maps)); out[n] = { legend: s, maps: s }; }
    else out[n] = { legend: makeScale(...range(maps)), maps: maps.map((m) => makeScale(...range([m]))), perMap: true };
  }
  return out;
}

export class StagesView {
  /** `onOpen(name, tile)` is called when a tile ({index, unit}) of stage `name` is clicked. */
  constructor(container, onOpen) {
    this.container = container;
    this.onOpen = onOpen;
    this.built = null; // the key of the rows in `container`, null when it is empty
    this.stages = {};
  }

  /**
   * Show `shown` ({model, info: Stages, stages: name → {shape, maps}}) in `view`
   * ("compact" | "pipeline") with colour scales `scale` ("map" | "stage" | "global");
   * `shown` null empties the view.
   */
  render(shown, view, scale) {
    if (!shown) {
      this.container.replaceChildren();
      this.built = null;
      this.stages = {};
      return;
    }
    this.stages = shown.stages;
    const groups = shown.info.rows(view).map((g) => g.filter((n) => n in shown.stages)).filter((g) => g.length);
    const key = `${shown.model}|${groups.map((g) => g.join(",")).join(";")}`;
    if (this.built !== key) {
      this.container.replaceChildren(...groups.map((g) => this.row(g)));
      this.built = key;
    }
    const names = groups.flat();
    const scales = scalesFor(names, shown.stages, scale);
    for (const name of names) {
      const fig = this.container.querySelector(`figure[data-stage="${name}"]`);
      const grid = fig.querySelector("canvas.grid");
      const s = scales[name];
      const layout = drawMaps(grid, shown.stages[name], s.maps);
      // As large as the panel allows: up to 8 screen pixels per value, 28 for a short
      // vector such as the 10 logits.
      const perValue = Math.min(layout.width <= 16 ? 28 : 8, 860 / layout.width);
      grid.style.width = `${Math.round(layout.width * perValue)}px`;
      grid._layout = layout;
      drawLegend(fig.querySelector(".legend canvas").getContext("2d"), s.legend);
      fig.querySelector(".legend .lo").textContent = s.perMap ? "each map:" : fmt(s.legend.lo);
      fig.querySelector(".legend .hi").textContent = s.perMap ? (s.legend.signed ? "−|max| … +|max|" : "0 … max") : fmt(s.legend.hi);
    }
  }

  row(group) {
    const figures = group.map((name) => {
      const shape = this.stages[name].shape;
      const grid = el("canvas", { className: "grid", dataset: { stage: name } });
      grid.addEventListener("mousemove", (e) => this.hover(e, name));
      grid.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
      grid.addEventListener("click", (e) => { const t = this.tileAt(e, name); if (t) this.onOpen(name, t); });
      const legend = el("span", { className: "legend" }, el("span", { className: "lo" }),
        el("canvas", { width: 120, height: 10 }), el("span", { className: "hi" }));
      const head = el("div", { className: "stage-head" }, el("h2", { textContent: name }),
        el("span", { className: "shape", textContent: shape.join("×") }), legend);
      return el("figure", { dataset: { stage: name } }, head, grid);
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
