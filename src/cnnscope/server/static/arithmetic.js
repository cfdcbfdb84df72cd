// "How this number is computed": one value of a conv map, an fc unit or a logit, spelled
// out from the server's `/api/arithmetic` (the model's own weights and inputs): the input
// patch under the kernel, the kernel, the products, their sum, plus the bias; then the
// activation and the pooling window's winner; for a vector unit its largest contributions;
// for the logits the softmax. The panel carries the place it shows in `data-stage`,
// `data-channel`, `data-y`, `data-x`; the value element carries the exact float in `data-value`.
import { Latest, isAbort, request } from "./api.js";
import { el } from "./dom.js";

/** A number for reading: 3 significant digits, exact zeros as "0". */
export function num(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e5 ? v.toExponential(2) : v.toPrecision(3).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

/** The place in a conv stage that the map position of `name` stands for, or null. */
export function arithmeticPlace(info, name, tile) {
  const s = info.get(name);
  if (!s) return null;
  if (s.kind === "fc" || s.kind === "logits") return tile.unit === null ? null : { stage: name, channel: tile.unit, y: 0, x: 0 };
  const conv = info.convOf(name);
  if (!conv || tile.y == null) return null;
  // An activation has the conv's positions; a pooled position maps to its window's corner.
  const [, ch, cw] = info.get(conv).shape, [, h, w] = s.shape;
  return { stage: conv, channel: tile.index, y: Math.floor((tile.y * ch) / h), x: Math.floor((tile.x * cw) / w) };
}

/** A table of numbers (rows of values); `mark(r, c)` → extra class of a cell. */
function grid(rows, { caption, mark = () => "", signed = true } = {}) {
  let m = 0;
  for (const r of rows) for (const v of r) m = Math.max(m, Math.abs(v));
  const table = el("table", { className: "numbers" });
  for (const [i, r] of rows.entries()) {
    table.append(el("tr", {}, ...r.map((v, j) => {
      const t = m ? v / m : 0;
      const bg = !signed || t >= 0 ? `rgba(229, 91, 60, ${Math.abs(t) * 0.75})` : `rgba(60, 130, 229, ${-t * 0.75})`;
      return el("td", { className: mark(i, j), textContent: num(v), style: `background:${bg}` });
    })));
  }
  return el("figure", {}, table, el("figcaption", { textContent: caption }));
}

const op = (text) => el("span", { className: "op", textContent: text });

export class ArithmeticView {
  /** `container`: the panel; `body()` → the current drawing's request body. */
  constructor(container, body, onShown = () => {}) {
    this.container = container;
    this.body = body;
    this.onShown = onShown; // called with each answer shown, null when cleared
    this.latest = new Latest();
  }

  clear() {
    this.onShown(null);
    this.latest.cancel();
    this.container.replaceChildren();
    for (const k of ["stage", "channel", "y", "x"]) delete this.container.dataset[k];
  }

  /** Ask for and show `place` ({stage, channel, y, x}) of the current drawing. */
  async show(place) {
    const signal = this.latest.next();
    const c = this.container;
    c.setAttribute("aria-busy", "true");
    c.replaceChildren(el("p", { className: "note progress", textContent: `computing ${place.stage} at the clicked place…` }));
    for (const k of ["stage", "channel", "y", "x"]) delete c.dataset[k];
    this.onShown(null);
    try {
      const a = await request("api/arithmetic", { body: { ...this.body(), ...place }, signal });
      if (signal.aborted) return;
      c.replaceChildren(...this.explain(a));
      Object.assign(c.dataset, { stage: a.stage, channel: String(a.channel), y: String(a.y), x: String(a.x) });
      this.onShown(a);
    } catch (e) {
      if (!isAbort(e)) c.replaceChildren(el("p", { className: "note", textContent: `error: ${e.message}` }));
    } finally {
      if (!signal.aborted) c.removeAttribute("aria-busy");
    }
  }

  explain(a) {
    const value = el("strong", { className: "value", textContent: num(a.value), title: String(a.value) });
    value.dataset.value = String(a.value);
    const where = a.kind === "conv" ? `${a.stage} map ${a.channel} at row ${a.y}, column ${a.x}` : `${a.stage} unit ${a.channel}`;
    const out = [
      el("h2", { textContent: `How this number is computed: ${where}` }),
      el("p", { className: "what", textContent: a.kind === "conv"
        ? `The ${a.kernel.join("×")} kernel slides over ${a.input_stage === "input" ? "the image" : `${a.input_stage}'s maps`}; at this place each input value is multiplied by the kernel weight over it, and everything is added up, plus a bias.`
        : `Each of the ${a.terms} inputs (${a.input_stage}) is multiplied by its weight; the products are added up, plus a bias.` }),
    ];
    const sum = el("p", { className: "sum" },
      `sum of the ${a.terms} products ${num(a.sum)}`, op("+"), `bias ${num(a.bias)}`, op("="),
      a.activation && a.kind !== "conv" ? `${num(a.pre_activation)}, ${a.activation.module} → ` : "", value,
      a.kind === "conv" ? ` (the pre-activation ${a.stage} value)` : "");
    // The result: the sum, then what the activation and the pooling make of it.
    const result = [sum];
    // A normalisation between the conv and its activation (BatchNorm: value × scale + shift).
    const n = a.kind === "conv" ? a.norm : null;
    if (n) {
      result.push(el("p", { className: "sum" }, `${n.module} (${n.stage}): `,
        n.scale == null ? `${n.module}(${num(a.value)})` : `${num(a.value)} × ${num(n.scale)}`,
        ...(n.scale == null ? [] : [op("+"), `${num(n.shift)}`]), op("="),
        el("strong", { textContent: num(n.value) })));
    }
    const before = n ? n.value : a.value;
    if (a.kind === "conv" && a.activation) {
      result.push(el("p", { className: "sum" }, `${a.activation.module} (${a.activation.stage}): `,
        a.activation.module === "ReLU" ? `max(0, ${num(before)})` : `${a.activation.module}(${num(before)})`, op("="),
        el("strong", { textContent: num(a.activation.value) })));
    }
    if (a.pool) result.push(this.pool(a));
    if (a.softmax) result.push(this.softmax(a));
    if (a.kind === "conv") out.push(...this.conv(a, result)); else out.push(this.contributions(a), ...result);
    return out;
  }

  /** The conv's terms, with the `result` lines where they read best. */
  conv(a, result) {
    const [ph, pw] = a.padding, [oy, ox] = a.origin;
    const [h, w] = a.input_shape.slice(1);
    // Cells outside the input are the padding zeros.
    const pad = (i, j) => (oy + i < 0 || ox + j < 0 || oy + i >= h || ox + j >= w ? "pad" : "");
    const out = [];
    const many = a.partials.length > 1;
    if (many) {
      // Hundreds of products: first each input channel's sum and the largest terms, then
      // the patches of the channels that count most.
      out.push(el("p", { className: "note" },
        `${a.input_shape[0]} input channels, so ${a.input_shape[0]} patches of ${a.kernel.join("×")}, one kernel slice each; ` +
        "each channel's sum (red adds, blue subtracts):"));
      const top = Math.max(...a.partials.map(Math.abs), 1e-9);
      out.push(el("div", { className: "partials" }, ...a.partials.map((v, k) =>
        el("span", { title: `channel ${k}: ${num(v)}`, style: `height:${2 + (30 * Math.abs(v)) / top}px`, className: v >= 0 ? "pos" : "neg" }))));
      out.push(this.contributions(a), ...result);
      out.push(el("p", { className: "note", textContent: `The ${a.patches.length} channels that add most (by size), in full:` }));
    }
    for (const p of a.patches) {
      out.push(el("div", { className: "patch-row" },
        grid(p.input, { caption: `input${many ? ` channel ${p.channel}` : ""}, rows ${oy}…${oy + a.kernel[0] - 1}${ph || pw ? " (grey: padding zeros)" : ""}`, mark: pad, signed: false }),
        op("×"), grid(p.kernel, { caption: "kernel weights" }),
        op("="), grid(p.products, { caption: "products" }),
        el("p", { className: "partial" }, "sum ", el("strong", { textContent: num(p.sum) }))));
    }
    if (!many) out.push(...result);
    return out;
  }

  contributions(a) {
    const where = (t) => (t.index !== undefined ? `${a.input_stage}[${t.index}]` : `${a.input_stage}[${t.channel}] (${t.dy}, ${t.dx})`);
    const rows = a.top.map((t) => el("tr", {}, el("td", { textContent: where(t) }), el("td", { textContent: num(t.input) }),
      el("td", { textContent: num(t.weight) }), el("td", { className: t.product >= 0 ? "pos" : "neg", textContent: num(t.product) })));
    return el("table", { className: "terms" },
      el("caption", { textContent: `the ${a.top.length} largest of ${a.terms} weight × input terms` }),
      el("tr", {}, ...["input", "value", "weight", "product"].map((h) => el("th", { textContent: h }))),
      ...rows,
      el("tr", {}, el("td", { textContent: `the other ${a.terms - a.top.length}` }), el("td"), el("td"), el("td", { textContent: num(a.rest) })));
  }

  pool(a) {
    const p = a.pool;
    const [ry, rx] = p.origin;
    const cell = (i, j) => (ry + i === p.winner[0] && rx + j === p.winner[1] ? "won" : "")
      + (ry + i === a.y && rx + j === a.x ? " clicked" : "");
    return el("div", { className: "patch-row" },
      grid(p.window, { caption: `${p.module} window of ${a.activation?.stage ?? a.stage}`, mark: cell, signed: false }),
      el("p", { className: "partial" },
        `${p.stage} keeps the largest of rows ${ry}…${ry + p.window.length - 1}, columns ${rx}…${rx + p.window[0].length - 1}: ${num(p.value)} at row ${p.winner[0]}, column ${p.winner[1]}. `,
        el("strong", { className: "pool-verdict", textContent: p.won ? "This position won."
          : p.window[a.y - ry]?.[a.x - rx] === p.value ? "This position ties with it (max-pool passes on the value either way)."
          : "This position lost." }),
        ` It becomes ${p.stage} at row ${p.y}, column ${p.x}.`));
  }

  softmax(a) {
    const s = a.softmax;
    return el("table", { className: "terms softmax" },
      el("caption", { textContent: `softmax: p = e^logit / Σ e^logit, Σ = ${num(s.total)}` }),
      el("tr", {}, ...["class", "logit", "e^logit", "probability"].map((h) => el("th", { textContent: h }))),
      ...s.logits.map((z, k) => el("tr", { className: k === a.channel ? "chosen" : "" },
        el("td", { textContent: String(k) }), el("td", { textContent: num(z) }),
        el("td", { textContent: num(s.exp[k]) }), el("td", { textContent: `${(s.probabilities[k] * 100).toFixed(2)} %` }))));
  }
}
