// The Evaluation view: scores, a clickable K×K confusion matrix (the server names the
// classes), the images in a cell.
import { Latest, getJSON, isAbort } from "./api.js";
import { b64bytes } from "./codec.js";
import { $, el } from "./dom.js";
import { progress } from "./progress.js";
import { digitCanvas } from "./render.js";

const pct = (v) => `${(v * 100).toFixed(2)} %`;

export class EvaluationView {
  /** `onPick(digit)` opens a digit ({index, label, pixels}) in the draw view. */
  constructor(onPick) {
    this.onPick = onPick;
    this.model = null;
    this.data = null;
    this.latest = new Latest(); // the summary
    this.cell = new Latest(); // the digits of a cell
  }

  async show(model) {
    if (this.model === model && this.data) return;
    this.model = model;
    this.data = null;
    const signal = this.latest.next();
    this.cell.cancel();
    $("cell-title").textContent = "Click a cell to see its digits";
    this.done?.(); // a progress of the model before
    const done = this.done = progress($("eval-summary"), `evaluating ${model} on its test set…`);
    $("confusion").replaceChildren();
    $("per-class").replaceChildren();
    $("cell-gallery").replaceChildren();
    let d;
    try {
      d = await getJSON(`api/evaluation/${encodeURIComponent(model)}`, { signal });
    } catch (e) {
      if (!isAbort(e)) { done(); $("eval-summary").textContent = `error: ${e.message}`; }
      return;
    }
    if (!signal.aborted) done();
    if (signal.aborted) return; // switched meanwhile
    this.data = d;
    $("eval-summary").textContent =
      `${model}: test accuracy ${pct(d.accuracy)} (${d.errors} errors in ${d.count.toLocaleString()}); ` +
      `untrained: ${pct(d.untrained_accuracy)}`;
    this.renderConfusion(d.confusion, d.classes);
    this.renderPerClass(d);
  }

  /** The name of class `k` (the server's; digits for MNIST). */
  name(k) { return this.data?.classes?.[k] ?? String(k); }

  renderConfusion(conf, names) {
    const table = $("confusion");
    const th = (k, title) => el("th", { textContent: names[k] ?? String(k), title });
    const head = el("tr", {}, el("th"), ...conf.map((_, p) => th(p, `predicted ${names[p]}`)));
    const rows = conf.map((row, t) => {
      const tr = el("tr", {}, th(t, `true ${names[t]}`));
      const total = row.reduce((a, b) => a + b, 0) || 1;
      row.forEach((count, p) => {
        const td = document.createElement("td");
        const share = count / total;
        // sqrt: the off-diagonal cells hold a few per mille and would vanish otherwise
        const a = Math.sqrt(share);
        td.style.background = t === p ? `rgba(74,144,217,${a})` : `rgba(245,165,36,${Math.min(1, a * 2)})`;
        td.textContent = count || "";
        td.title = `true ${names[t]}, predicted ${names[p]}: ${count} (${(share * 100).toFixed(2)} % of the ${names[t]}s)`;
        td.dataset.true = t;
        td.dataset.pred = p;
        td.onclick = () => this.openCell(t, p, td);
        tr.append(td);
      });
      return tr;
    });
    table.replaceChildren(head, ...rows);
  }

  renderPerClass(d) {
    const cells = (tag, values) => el("tr", {}, ...values.map((v) => el(tag, { textContent: v })));
    $("per-class").replaceChildren(
      cells("th", ["class", "precision", "recall", "F1", "support"]),
      ...d.precision.map((_, k) => cells("td",
        [this.name(k), pct(d.precision[k]), pct(d.recall[k]), pct(d.f1[k]), String(d.support[k])])));
  }

  async openCell(t, p, td) {
    document.querySelectorAll("#confusion td.selected").forEach((c) => c.classList.remove("selected"));
    td.classList.add("selected");
    const signal = this.cell.next();
    this.cellDone?.();
    const [nt, np] = [this.name(t), this.name(p)];
    const done = this.cellDone = progress($("cell-title"), `finding the ${nt}s predicted as ${np}…`);
    let cell;
    try {
      cell = await getJSON(`api/evaluation/${encodeURIComponent(this.model)}/cell?true=${t}&pred=${p}&limit=80`, { signal });
    } catch (e) {
      if (!isAbort(e)) { done(); $("cell-title").textContent = `error: ${e.message}`; }
      return;
    }
    if (signal.aborted) return;
    done();
    $("cell-title").textContent = t === p
      ? `${cell.count} ${nt}s predicted correctly; the ${cell.digits.length} least confident`
      : `${cell.count} ${nt}s predicted as ${np}; click one to open it in the draw view`;
    $("cell-gallery").replaceChildren(...cell.digits.map((d) => {
      const pixels = b64bytes(d.pixels);
      const fig = el("figure", { title: `test image ${d.index}: true ${this.name(d.label)}, predicted ${this.name(d.pred)}` },
        digitCanvas(pixels, d.size), el("figcaption", { textContent: `#${d.index} p=${d.probabilities[d.pred].toFixed(2)}` }));
      fig.onclick = () => this.onPick({ index: d.index, label: d.label, name: this.name(d.label), pixels, size: d.size });
      return fig;
    }));
  }
}
