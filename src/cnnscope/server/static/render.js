// Pure drawing functions: values in, pixels out. Every scale is an explicit argument.
import { canvas } from "./dom.js";

/** min and max over a list of arrays */
export function range(arrays) {
  let lo = Infinity, hi = -Infinity;
  for (const a of arrays) for (let i = 0; i < a.length; i++) { const v = a[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo === Infinity ? [0, 0] : [lo, hi];
}

// Colour maps as control points, linearly interpolated into 256-entry tables.
function table(stops) {
  const t = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2), f = x - k;
    for (let c = 0; c < 3; c++) t[i * 3 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f;
  }
  return t;
}
// Sequential (magma-like) for values ≥ 0; diverging blue–black–red for signed values,
// black at zero so silent units read as background in both.
export const SEQUENTIAL = table([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]]);
export const DIVERGING = table([[103, 169, 207], [33, 102, 172], [0, 0, 0], [178, 24, 43], [239, 138, 98]]);

/**
 * A scale turns a value into a table index. Signed data (lo < 0) uses a symmetric
 * diverging scale centred on zero; otherwise [0, hi] on the sequential map.
 */
export function makeScale(lo, hi) {
  if (lo < 0) {
    const m = Math.max(-lo, hi) || 1;
    return { signed: true, lo: -m, hi: m, lut: DIVERGING, index: (v) => Math.round(((v / m) + 1) * 127.5) };
  }
  const m = hi || 1;
  return { signed: false, lo: 0, hi: m, lut: SEQUENTIAL, index: (v) => Math.round((v / m) * 255) };
}

/** Layout of a stage's maps as tiles: {cols, rows, tw, th, gap, width, height}. */
export function tileLayout(shape, maxCols = 16) {
  const gap = 1;
  if (shape.length === 3) {
    const [c, h, w] = shape;
    const cols = Math.min(c, maxCols), rows = Math.ceil(c / cols);
    return { count: c, cols, rows, tw: w, th: h, gap, width: cols * (w + gap) - gap, height: rows * (h + gap) - gap };
  }
  // A vector: one tile, as square as possible (1,024 units → 32×32).
  const n = shape[0];
  const tw = n <= 16 ? n : Math.ceil(Math.sqrt(n));
  const th = Math.ceil(n / tw);
  return { count: 1, cols: 1, rows: 1, tw, th, gap, width: tw, height: th };
}

/**
 * The tiling of a stage that draws its values largest inside `maxW` × `maxH` screen
 * pixels: {layout, perValue} (screen pixels per value, at most 8; 28 for ≤ 16 values).
 */
export function fitLayout(shape, maxW, maxH) {
  const options = shape.length === 3 ? [4, 8, 16, 32].filter((c) => c < shape[0]).concat([shape[0]]) : [0];
  let best = null;
  for (const cols of options) {
    const layout = tileLayout(shape, cols || undefined);
    const cap = layout.width <= 16 ? 28 : 8;
    const perValue = Math.min(cap, maxW / layout.width, maxH / layout.height);
    if (!best || perValue > best.perValue + 1e-9) best = { layout, perValue };
  }
  return best;
}

/**
 * Draw every map of a stage, tiled, into `ctx` at native resolution.
 * `scales[i]` is the scale of map i (shared or per map).
 */
export function drawStage(ctx, stage, layout, scales) {
  const img = ctx.createImageData(layout.width, layout.height);
  const px = img.data;
  for (let i = 3; i < px.length; i += 4) px[i] = 255;
  // gaps a dim grey so tiles stay apart
  for (let i = 0; i < px.length; i += 4) { px[i] = px[i + 1] = px[i + 2] = 40; }
  stage.maps.forEach((map, m) => {
    const s = scales[m];
    const ox = (m % layout.cols) * (layout.tw + layout.gap);
    const oy = Math.floor(m / layout.cols) * (layout.th + layout.gap);
    for (let y = 0; y < layout.th; y++)
      for (let x = 0; x < layout.tw; x++) {
        const k = y * layout.tw + x;
        const o = ((oy + y) * layout.width + ox + x) * 4;
        if (k >= map.length) { px[o] = px[o + 1] = px[o + 2] = 40; continue; }
        const t = Math.max(0, Math.min(255, s.index(map[k]))) * 3;
        px[o] = s.lut[t]; px[o + 1] = s.lut[t + 1]; px[o + 2] = s.lut[t + 2];
      }
  });
  ctx.putImageData(img, 0, 0);
}

/** A legend bar for `scale` into a 120×10 canvas. */
export function drawLegend(ctx, scale) {
  const w = ctx.canvas.width, h = ctx.canvas.height;
  const img = ctx.createImageData(w, h);
  for (let x = 0; x < w; x++) {
    const t = Math.round((x / (w - 1)) * 255) * 3;
    for (let y = 0; y < h; y++) {
      const o = (y * w + x) * 4;
      img.data[o] = scale.lut[t]; img.data[o + 1] = scale.lut[t + 1]; img.data[o + 2] = scale.lut[t + 2]; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** A grayscale image into ctx: `values[i] / white` clipped to [0, 1] (white = 255 for uint8). */
export function drawGray(ctx, values, w = 28, h = 28, white = 1) {
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const g = Math.round(Math.max(0, Math.min(1, values[i] / white)) * 255);
    img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = g;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** A uint8 digit (0 black … 255 white), 28×28 unless `w`×`h` is given, into ctx. */
export const drawDigit = (ctx, pixels, w = 28, h = 28) => drawGray(ctx, pixels, w, h, 255);

/** A new canvas showing a uint8 image, 28×28 unless `[h, w]` is given. */
export function digitCanvas(pixels, [h, w] = [28, 28]) {
  const c = canvas(w, h);
  drawDigit(c.getContext("2d"), pixels, w, h);
  return c;
}

/** A receptive field [top, left, bottom, right) outlined on a digit's canvas. */
export function drawField(ctx, [top, left, bottom, right]) {
  ctx.strokeStyle = "#f5a524";
  ctx.lineWidth = 1;
  ctx.strokeRect(left + 0.5, top + 0.5, right - left - 1, bottom - top - 1);
}

/**
 * `stage`'s maps tiled into `canvas`, resized to fit them; one scale for all maps, or
 * `scales` per map. Returns the layout (for hit-testing).
 */
export function drawMaps(target, stage, scales, maxCols = 16) {
  const layout = tileLayout(stage.shape, maxCols);
  if (target.width !== layout.width || target.height !== layout.height) {
    target.width = layout.width;
    target.height = layout.height;
  }
  const per = Array.isArray(scales) ? scales : stage.maps.map(() => scales);
  drawStage(target.getContext("2d"), stage, layout, per);
  return layout;
}

export function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1000) ? v.toExponential(1) : v.toFixed(2);
}

/** Give `canvas` the size of an [h, w] image (a no-op when it has it: resizing clears). */
export function fitCanvas(canvas, [h, w]) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return canvas;
}

/**
 * The [h, w] input (28×28 unless given) in grey with an attribution map over it: red where
 * a pixel pushes the class up, blue where it pushes it down, opacity growing with
 * |value| / max |value|.
 */
export function drawOverlay(ctx, input, attr, [h, w] = [28, 28]) {
  let m = 0;
  for (let i = 0; i < attr.length; i++) m = Math.max(m, Math.abs(attr[i]));
  m = m || 1;
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const g = Math.max(0, Math.min(1, input[i])) * 110; // dimmed digit underneath
    const v = attr[i] / m, a = Math.min(1, Math.abs(v) * 1.4);
    const [r, gg, b] = v >= 0 ? [255, 60, 40] : [60, 140, 255];
    img.data[i * 4] = g + (r - g) * a;
    img.data[i * 4 + 1] = g + (gg - g) * a;
    img.data[i * 4 + 2] = g + (b - g) * a;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** The colours of `drawOverlay` as a legend scale: blue (lowers) … grey … red (raises). */
export const OVERLAY_SIGNED = { lut: table([[60, 140, 255], [110, 110, 110], [255, 60, 40]]) };
/** … and for a map without sign (saliency, Grad-CAM): grey (no effect) … red (most). */
export const OVERLAY_MAGNITUDE = { lut: table([[110, 110, 110], [255, 60, 40]]) };
