// The detail dialog: one map enlarged, the conv filter behind it, the unit's preferred
// input and the test digits that excite it. Opening another map drops the answers still
// due for the one before.
import { Latest, getJSON, isAbort } from "./api.js";
import { arithmeticPlace } from "./arithmetic.js";
import { decodeFilter } from "./codec.js";
import { $ } from "./dom.js";
import { TopExamples, preferredImage } from "./features.js";
import { drawDigit, drawLegend, drawMaps, fitCanvas, fmt, makeScale, range } from "./render.js";

export class Detail {
  /** `arithmetic`: the ArithmeticView of the dialog ("how this number is computed"). */
  constructor(arithmetic) {
    this.arithmetic = arithmetic;
    this.opened = null; // {shown, name, tile} of the open map
    // A click on the enlarged map explains the value under it.
    $("detail-map").addEventListener("click", (e) => this.pick(e));
    this.filters = {}; // `${model}/${conv}` → FilterWeights
    this.latest = new Latest(); // filter weights and preferred image of the open map
    this.top = new TopExamples($("detail-top"));
    // Closed: the answers still due for it are no longer wanted.
    $("detail").addEventListener("close", () => { this.latest.cancel(); this.top.clear(); this.arithmetic.clear(); });
  }

  /**
   * Open map `tile.index` (or vector unit `tile.unit`) of stage `name`.
   * `shown` is what the draw view shows: {model, info: Stages, stages}.
   */
  open(shown, name, tile) {
    const { model, info } = shown;
    this.opened = { shown, name, tile };
    const place = arithmeticPlace(info, name, tile);
    if (place) this.arithmetic.show(place); else this.arithmetic.clear();
    const stage = shown.stages[name];
    const spatial = stage.shape.length === 3;
    const map = stage.maps[tile.index];
    const [lo, hi] = range([map]);
    if (spatial) drawMaps($("detail-map"), { shape: [1, ...stage.shape.slice(1)], maps: [map] }, makeScale(lo, hi));
    else drawMaps($("detail-map"), stage, makeScale(lo, hi));
    $("detail-title").textContent = spatial ? `${name}, channel ${tile.index}` : name;
    $("detail-range").textContent = ` min ${fmt(lo)}, max ${fmt(hi)}`;
    const scale = makeScale(lo, hi), legend = $("detail-map").parentNode.querySelector(".legend");
    drawLegend(legend.querySelector("canvas").getContext("2d"), scale);
    legend.querySelector(".lo").textContent = fmt(scale.lo);
    legend.querySelector(".hi").textContent = fmt(scale.hi);
    $("detail-filter-fig").hidden = true;
    $("detail-pref-fig").hidden = true;
    $("detail-top-title").hidden = true;
    this.top.clear();
    const signal = this.latest.next();
    if (!$("detail").open) $("detail").showModal();
    // The unit behind this map: a conv layer's channel, an fc unit, or a class.
    const unitStage = info.unitStage(name);
    const unit = spatial ? tile.index : tile.unit;
    if (unitStage && unit !== null) this.showUnit(model, unitStage, unit, !info.seesAll(unitStage), info.inputSize, signal);
    const conv = spatial ? info.convOf(name) : null;
    if (conv) this.showFilter(model, conv, tile.index, signal);
  }

  /**
   * Outline on the enlarged map the place the arithmetic explains (`a`: its answer, null:
   * none). A pooled or activation map shows the conv's place scaled to its own size.
   */
  mark(a) {
    const marker = $("detail-marker");
    const opened = this.opened;
    if (!a || !opened) { marker.hidden = true; return; }
    const shape = opened.shown.stages[opened.name].shape;
    const canvas = $("detail-map");
    if (a.kind === "conv" && shape.length === 3) {
      const [, h, w] = shape, [, ch, cw] = opened.shown.stages[a.stage]?.shape ?? shape;
      const y = Math.floor((a.y * h) / ch), x = Math.floor((a.x * w) / cw);
      Object.assign(marker.style, { left: `${canvas.offsetLeft + (x / w) * canvas.clientWidth}px`, top: `${canvas.offsetTop + (y / h) * canvas.clientHeight}px`,
        width: `${canvas.clientWidth / w}px`, height: `${canvas.clientHeight / h}px` });
    } else if (shape.length === 1) {
      const cw = canvas.width, ch = canvas.height;
      const y = Math.floor(a.channel / cw), x = a.channel % cw;
      Object.assign(marker.style, { left: `${canvas.offsetLeft + (x / cw) * canvas.clientWidth}px`, top: `${canvas.offsetTop + (y / ch) * canvas.clientHeight}px`,
        width: `${canvas.clientWidth / cw}px`, height: `${canvas.clientHeight / ch}px` });
    } else { marker.hidden = true; return; }
    marker.hidden = false;
  }

  /** The value under a click on the enlarged map: a position of a spatial map, a unit of a vector. */
  pick(e) {
    if (!this.opened) return;
    const { shown, name, tile } = this.opened;
    const shape = shown.stages[name].shape;
    const r = e.currentTarget.getBoundingClientRect();
    const fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
    const cw = e.currentTarget.width, ch = e.currentTarget.height;
    const px = Math.min(cw - 1, Math.floor(fx * cw)), py = Math.min(ch - 1, Math.floor(fy * ch));
    const next = shape.length === 3 ? { ...tile, y: py, x: px }
      : { ...tile, unit: py * cw + px < shape[0] ? py * cw + px : null };
    const place = arithmeticPlace(shown.info, name, next);
    if (place) { this.opened.tile = next; this.arithmetic.show(place); }
  }

  async showFilter(model, conv, channel, signal) {
    const k = `${model}/${conv}`;
    try {
      this.filters[k] ??= await getJSON(`api/models/${encodeURIComponent(model)}/filters/${conv}`, { signal });
      if (signal.aborted) return;
      const filter = decodeFilter(this.filters[k], channel);
      const [cin, kh, kw] = filter.shape;
      // signed weights: always the diverging scale, even if one filter is all positive
      const [lo, hi] = range(filter.maps);
      drawMaps($("detail-filter"), filter, makeScale(Math.min(lo, -1e-6), hi), 8);
      $("detail-filter-caption").textContent =
        `${conv} filter ${channel}: ${cin} input channel${cin > 1 ? "s" : ""} × ${kh}×${kw}, blue < 0 < red`;
      $("detail-filter-fig").hidden = false;
    } catch (e) {
      if (!isAbort(e)) $("detail-filter-caption").textContent = e.message;
    }
  }

  async showUnit(model, stage, unit, fields, size, signal) {
    $("detail-top-title").textContent = `The test digits ${stage}:${unit} likes most`;
    $("detail-top-title").hidden = false;
    const top = this.top.show(model, stage, unit, { fields });
    $("detail-pref-caption").textContent = "loading its preferred input…";
    try {
      const pixels = await preferredImage(model, stage, unit, size, signal);
      if (signal.aborted) return;
      $("detail-pref-caption").textContent = pixels
        ? `${stage}:${unit}'s preferred input (regularized)`
        : "its preferred input is rendering: see the Features tab";
      if (pixels) drawDigit(fitCanvas($("detail-pref"), size).getContext("2d"), pixels, size[1], size[0]);
      $("detail-pref-fig").hidden = false;
    } catch (e) {
      if (!isAbort(e)) $("detail-top-title").textContent = `error: ${e.message}`;
    }
    await top;
  }
}
