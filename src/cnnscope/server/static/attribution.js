// The attribution panel ("why"): a map over the input saying which pixels raise the class.
// Fast methods arrive with each prediction; slow ones are asked for on demand. What it
// shows is drawn from the draw view's state only.
import { decodeMaps } from "./codec.js";
import { $ } from "./dom.js";
import { OVERLAY_MAGNITUDE, OVERLAY_SIGNED, drawLegend, drawOverlay, fitCanvas, fmt } from "./render.js";

/** Methods the server computes with every prediction: filled from /api/health at start. */
export const FAST = new Set();

/**
 * Paint the panel. `attr`: {method, target, slow: {rev, model, method, target, json} | null,
 * computing, error}; `result`: the prediction shown (or null); `rev`: the drawing's revision.
 */
export function renderAttribution(attr, result, rev) {
  const { method } = attr;
  const canvas = $("attr"), note = $("attr-note");
  const slow = Boolean(method) && !FAST.has(method);
  $("attr-compute").hidden = !slow;
  canvas.hidden = !method;
  const legend = document.querySelector(".attr-legend");
  legend.hidden = true;
  let shown = null;
  if (method && !slow && result?.res.attribution?.method === method) {
    shown = { input: result.res.input, a: result.res.attribution, ms: null };
  } else if (slow && attr.slow && attr.slow.rev === rev && attr.slow.model === result?.model
    && attr.slow.method === method && attr.slow.target === attr.target) {
    shown = { input: attr.slow.json.input, a: attr.slow.json.attribution, ms: attr.slow.json.server_ms };
  }
  if (!shown) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    note.textContent = !method || !result ? ""
      : attr.error ? `error: ${attr.error}`
      : slow ? (attr.computing ? `computing ${method}…` : "press Compute for this drawing") : "";
    return;
  }
  const input = decodeMaps(shown.input); // shape: the model's [H, W]
  const x = input.maps[0];
  const m = decodeMaps(shown.a.map).maps[0];
  drawOverlay(fitCanvas(canvas, input.shape).getContext("2d"), x, m, input.shape);
  // Say the colours the map uses: a map without negative values (saliency's |gradient|,
  // Grad-CAM after its ReLU) has no blue, only grey → red.
  let lo = 0, hi = 0;
  for (const v of m) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const signed = lo < 0;
  drawLegend(legend.querySelector("canvas").getContext("2d"), signed ? OVERLAY_SIGNED : OVERLAY_MAGNITUDE);
  const big = Math.max(-lo, hi);
  legend.querySelector(".lo").textContent = signed ? `lowers ${fmt(-big)}` : "0";
  legend.querySelector(".hi").textContent = signed ? `raises ${fmt(big)}` : `most ${fmt(hi)}`;
  legend.hidden = false;
  const extra = shown.a.details.baseline ? `; baseline: ${shown.a.details.baseline}` : "";
  const empty = m.every((v) => v === 0) ? " — empty map: nothing here raises this class" : "";
  const ms = shown.ms === null ? "" : ` (${shown.ms.toFixed(0)} ms)`;
  const colours = signed ? "red pixels raise it, blue ones lower it"
    : "the redder a pixel, the more it matters (this map has no sign: it does not say up or down)";
  note.textContent = `${shown.a.method} for class ${shown.a.target}: ${colours}${extra}${empty}${ms}`;
}
