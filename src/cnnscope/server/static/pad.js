// The drawing pad: pointer events (mouse, touch, pen), round strokes, undo.
import { greyPNG } from "./codec.js";
import { digitCanvas } from "./render.js";

// The brush follows the drawing's size, as the user draws: 0.15 × the longer side of the
// strokes' path, between 4 and 22 px (MNIST's strokes are 0.13 of the digit's size; a fixed
// 22-px brush fills the loops of a digit drawn 30–60 px tall: 24–87 % read right, against
// 90–99 % adapted; bench/drawing_path.py mirrors this rule). A full-size digit keeps 22 px.
export const BRUSH = { min: 4, max: 22, fraction: 0.15 };

/** The brush width, in canvas pixels, for `strokes` (lists of [x, y]). */
export function brushFor(strokes, { min, max, fraction } = BRUSH) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const s of strokes) for (const [x, y] of s) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (!Number.isFinite(x0)) return max;
  return Math.min(max, Math.max(min, fraction * Math.max(x1 - x0, y1 - y0)));
}

export class Pad {
  constructor(canvas, onChange, { brush = null } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onChange = onChange;
    this.fixedBrush = brush; // a number fixes the width; null: it follows the drawing
    this.brush = brush ?? BRUSH.max;
    this.strokes = []; // each a list of [x, y] in canvas pixels
    this.background = null; // an ImageData under the strokes (a loaded test digit)
    this.drawing = false;
    canvas.addEventListener("pointerdown", (e) => this._down(e));
    canvas.addEventListener("pointermove", (e) => this._move(e));
    for (const t of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(t, () => this._up());
    this.redraw();
  }

  _pos(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * this.canvas.width) / r.width, ((e.clientY - r.top) * this.canvas.height) / r.height];
  }

  _down(e) {
    this.canvas.setPointerCapture?.(e.pointerId);
    this.drawing = true;
    this.strokes.push([this._pos(e)]);
    this.redraw();
    this.onChange("draw");
  }

  _move(e) {
    if (!this.drawing) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    const stroke = this.strokes[this.strokes.length - 1];
    for (const ev of events.length ? events : [e]) stroke.push(this._pos(ev));
    this.redraw();
    this.onChange("draw");
  }

  _up() {
    if (!this.drawing) return;
    this.drawing = false;
    this.onChange("draw");
  }

  clear() { this.strokes = []; this.background = null; this.redraw(); this.onChange("clear"); }

  undo() {
    if (this.strokes.length) this.strokes.pop();
    else this.background = null;
    this.redraw();
    this.onChange("draw");
  }

  isEmpty() { return !this.strokes.length && !this.background; }

  /** Show a uint8 digit of `size` [h, w] (28×28 unless given), scaled up, as the background. */
  setDigit(pixels, size = [28, 28]) {
    const tmp = digitCanvas(pixels, size);
    this.strokes = [];
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.ctx.imageSmoothingEnabled = true;
    // Scaled up whole, its aspect kept (a 20×24 image is not stretched square).
    const [h, w] = size, { width: cw, height: ch } = this.canvas, s = Math.min(cw / w, ch / h);
    this.ctx.drawImage(tmp, (cw - w * s) / 2, (ch - h * s) / 2, w * s, h * s);
    this.background = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }

  redraw() {
    const { ctx, canvas } = this;
    if (this.background) ctx.putImageData(this.background, 0, 0);
    else { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); }
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    this.brush = this.fixedBrush ?? brushFor(this.strokes);
    this.canvas.dataset.brush = this.brush.toFixed(1);
    ctx.lineWidth = this.brush;
    ctx.lineCap = ctx.lineJoin = "round";
    for (const s of this.strokes) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      if (s.length === 1) { ctx.arc(s[0][0], s[0][1], this.brush / 2, 0, 2 * Math.PI); ctx.fill(); continue; }
      for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }

  /** A promise of the drawing as a PNG data URL (one grey channel: codec.js greyPNG). */
  toPNG() { return greyPNG(this.canvas); }
}
