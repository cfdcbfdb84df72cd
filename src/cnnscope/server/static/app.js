// The draw view's state and the wiring of every view. One state object holds the drawing
// and its results; every change goes through `update`, and `render` paints the draw view
// from the state alone, so what is shown is always what the state says.
import { FAST, renderAttribution } from "./attribution.js";
import { HttpError, Latest, Predictor, busy, getJSON, isAbort, request } from "./api.js";
import { ArchitectureView } from "./architecture.js";
import { ArithmeticView } from "./arithmetic.js";
import { b64bytes, decodeMaps, decodeStages, greyPNG } from "./codec.js";
import { Detail } from "./detail.js";
import { $, el } from "./dom.js";
import { EmbeddingView } from "./embed.js";
import { EvaluationView } from "./eval.js";
import { FeaturesView } from "./features.js";
import { initGuide } from "./guide.js";
import { Pad } from "./pad.js";
import { digitCanvas, drawGray, fitCanvas } from "./render.js";
import { Stages } from "./stageinfo.js";
import { StagesView } from "./stages.js";
import { TrainView } from "./train.js";

const state = {
  models: [], // ModelInfo from /api/models
  info: {}, // model id → Stages (its StageInfo)
  model: null,
  view: "compact",
  scale: "map",
  // The drawing: `rev` counts its changes; `since` is the revision of the last change that
  // was not a continuation (clear, undo to empty, a test digit, another model): answers
  // to older drawings are not shown after it. `source` is null while the pad is empty.
  drawing: { rev: 0, since: 0, source: null }, // source: {kind: "png"} | {kind: "pixels", pixels, size, label, index}
  result: null, // {seq, rev, model, res, stages, ms}: the prediction shown
  error: null,
  attr: { method: "", target: "", slow: null, computing: false, error: null, failed: null },
};
// Exposed for tests and benchmarks: the state and how long the last full repaint took.
window.cnnscope = { state, lastRenderMs: null, renders: 0, render: () => render(true) };

/** Apply `change(state)`, then repaint the draw view. */
function update(change) {
  change(state);
  render();
}

// ---- the drawing -------------------------------------------------------------
/** The pad changed: a stroke (`continued`) or a fresh start (clear, undo, a test digit). */
function drawingChanged(source, continued) {
  slowAttr.cancel(); // an attribution on demand is for one drawing
  update((s) => {
    s.attr.computing = false;
    s.drawing.rev++;
    s.drawing.source = source;
    if (!continued || !source) {
      s.drawing.since = s.drawing.rev;
      s.result = null;
      s.error = null;
    }
  });
  if (!source) { predictor.cancel(); cancelSchedule(); return; }
  if (continued) schedule(); else requestPrediction();
}

/**
 * The drawing as the request's input for the chosen model. A test digit goes as its pixels
 * when it is the model's input size (/api/models' input_shape), else as a PNG of the digit
 * itself, which the server fits to the model's size as it fits a drawing.
 */
function inputBody() {
  const src = state.drawing.source;
  if (src.kind !== "pixels") return { png: pad.toPNG(), model: state.model };
  const [h, w] = state.info[state.model].inputSize;
  return src.size[0] === h && src.size[1] === w
    ? { pixels: Array.from(src.pixels, (v) => v / 255), model: state.model }
    : { png: greyPNG(digitCanvas(src.pixels, src.size)), model: state.model };
}

// ---- predictions -------------------------------------------------------------
const predictor = new Predictor(onResult, onPredictError);

let requests = 0; // numbers each prediction request: a later one's answer wins

function requestPrediction() {
  cancelSchedule();
  if (!state.drawing.source) return;
  const body = inputBody();
  const { method, target, failed } = state.attr;
  if (FAST.has(method) && failed !== state.model) {
    body.explain = method;
    if (target !== "") body.target = Number(target);
  }
  predictor.request(body, { seq: ++requests, rev: state.drawing.rev, model: state.model, explain: body.explain });
}

function onPredictError(e, tag) {
  if (tag.explain && e instanceof HttpError && e.status < 500 && tag.model === state.model) {
    // The attribution failed, not the prediction: say so in its panel, predict without it.
    update((s) => { s.attr.error = e.message; s.attr.failed = tag.model; });
    requestPrediction();
    return;
  }
  update((s) => { s.error = e.message; });
}

// While drawing, ask at most every 60 ms (the Predictor also drops stale answers). The
// page counts as busy while a request is scheduled.
let timer = null, timerBusy = null;
function schedule() {
  if (timer) return;
  timerBusy = busy();
  timer = setTimeout(requestPrediction, 60);
}
function cancelSchedule() {
  clearTimeout(timer);
  timer = null;
  timerBusy?.();
  timerBusy = null;
}

function onResult(res, ms, tag) {
  const d = state.drawing;
  // An answer for another model, for a drawing from before a fresh start, or to a request
  // older than the one shown is not this drawing's.
  if (tag.model !== state.model || !d.source || tag.rev < d.since || tag.seq <= (state.result?.seq ?? 0)) return;
  update((s) => {
    s.result = { ...tag, res, stages: decodeStages(res), ms };
    s.error = null;
  });
}

// ---- attribution on demand ---------------------------------------------------
const slowAttr = new Latest();

async function computeSlowAttribution() {
  const src = state.drawing.source;
  const { method, target } = state.attr;
  if (!src || !method || FAST.has(method)) return;
  const tag = { rev: state.drawing.rev, model: state.model, method, target };
  const body = { ...inputBody(), method };
  if (target !== "") body.target = Number(target);
  const signal = slowAttr.next();
  update((s) => { s.attr.computing = true; s.attr.error = null; });
  try {
    const json = await request("api/explain", { body, signal });
    if (signal.aborted) return;
    update((s) => { s.attr.slow = { ...tag, json }; s.attr.computing = false; });
  } catch (e) {
    if (!isAbort(e)) update((s) => { s.attr.error = e.message; s.attr.computing = false; });
  }
}

function onAttrChange() {
  slowAttr.cancel();
  update((s) => {
    s.attr = {
      method: $("attr-method").value, target: $("attr-target").value,
      slow: null, computing: false, error: null, failed: null, // failed: the model it failed for
    };
  });
  const { method } = state.attr;
  if (!method || !state.drawing.source) return;
  if (FAST.has(method)) requestPrediction(); else computeSlowAttribution();
}

// ---- rendering ---------------------------------------------------------------
function statusText() {
  if (state.error) return `error: ${state.error}`;
  const r = state.result;
  if (r) return `${r.res.model}: ${r.res.predicted} · server ${r.res.server_ms.toFixed(1)} ms · round trip ${r.ms.toFixed(0)} ms`;
  return state.drawing.source ? "…" : "draw a digit";
}

// What the maps were last painted from: a stroke changes the state but not the maps, and
// repainting every stage on every pointer move would slow the drawing down.
let painted = null;

/** Paint the draw view from `state`; the maps only when what they show changed (or `force`). */
function render(force = false) {
  const r = state.result;
  $("status").textContent = $("status").title = statusText(); // the title: all of it, when cut
  const src = state.drawing.source;
  $("digit-note").textContent = src?.kind === "pixels" ? `test image #${src.index}, label ${src.name ?? src.label}` : "";
  renderAttribution(state.attr, r, state.drawing.rev);
  if (!force && painted && painted.result === r && painted.view === state.view && painted.scale === state.scale) return;
  painted = { result: r, view: state.view, scale: state.scale };
  const t0 = performance.now();
  // What the network saw, at its input size ([H, W] of the answer's input).
  const input = r && decodeMaps(r.res.input);
  const [h, w] = input?.shape ?? state.info[state.model]?.inputSize ?? [28, 28];
  const seen = fitCanvas($("seen"), [h, w]).getContext("2d");
  $("seen-what").textContent = h === 28 && w === 28
    ? "Your drawing cropped, scaled to 20×20 and centred in 28×28, as MNIST digits are."
    : `Your drawing cropped, scaled as MNIST's digits are (20/28 of the shorter side) and centred in ${h}×${w}, this model's input.`;
  if (input) drawGray(seen, input.maps[0], input.shape[1], input.shape[0]); else seen.clearRect(0, 0, seen.canvas.width, seen.canvas.height);
  const inverted = Boolean(r?.res.inverted);
  $("seen-note").dataset.inverted = String(inverted);
  $("seen-note").textContent = inverted ? "Dark ink on light paper: inverted to white on black, as MNIST." : "";
  renderBars(r?.res);
  stagesView.render(r && { model: r.model, info: state.info[r.model], stages: r.stages }, state.view, state.scale);
  if (!$("arch-view").hidden) architecture.thumbnails(archShown());
  window.cnnscope.lastRenderMs = performance.now() - t0;
  if (r) window.cnnscope.renders++; // repaints of a prediction
}

/** The class names of model `id` (from /api/models: the server knows them, we do not). */
const classesOf = (id) => state.models.find((m) => m.id === id)?.classes ?? [];

function renderBars(res) {
  const bars = $("bars");
  if (!res) { bars.replaceChildren(); delete bars.dataset.model; return; }
  if (bars.children.length !== res.probabilities.length || bars.dataset.model !== res.model) {
    const names = classesOf(res.model);
    bars.dataset.model = res.model;
    // The names' column: as wide as the longest name (digits: one character), up to ~10
    // characters; in em, not ch, so the bold top row keeps the same column.
    const longest = Math.min(10, Math.max(1, ...names.map((n) => n.length)));
    bars.style.setProperty("--name-width", `${Math.max(1.2, longest * 0.62)}em`);
    bars.replaceChildren(...res.probabilities.map((_, k) => {
      const row = el("div", { className: "bar" },
        el("span", { className: "name", textContent: names[k] ?? String(k), title: names[k] ?? String(k) }),
        el("div", { className: "track" }, el("div", { className: "fill" })),
        el("span", { className: "pct" }));
      row.dataset.class = String(k);
      return row;
    }));
  }
  res.probabilities.forEach((p, k) => {
    const row = bars.children[k];
    row.classList.toggle("top", k === res.predicted);
    row.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".pct").textContent = `${(p * 100).toFixed(1)}%`;
    row.title = `logit ${res.logits[k].toFixed(3)}`;
  });
}

// ---- wiring ------------------------------------------------------------------
// The dialog's arithmetic asks about the drawing the maps were computed from.
const arithmetic = new ArithmeticView($("arithmetic"), () => inputBody(), (a) => detail.mark(a));
const detail = new Detail(arithmetic);
const stagesView = new StagesView($("stages"), (name, tile) => {
  const r = state.result;
  if (r) detail.open({ model: r.model, info: state.info[r.model], stages: r.stages }, name, tile);
});

const pad = new Pad($("pad"), (why) => {
  randomDigit.cancel();
  if (why === "clear" || pad.isEmpty()) { drawingChanged(null, false); return; }
  // A stroke over a test digit makes it a drawing: from now on the pad's PNG is sent.
  drawingChanged({ kind: "png" }, state.drawing.source !== null);
});
$("clear").onclick = () => pad.clear();
$("undo").onclick = () => pad.undo();

/** Put a test digit ({index, label, pixels: Uint8Array, size: [h, w]}) on the pad and predict it. */
function showDigit(d) {
  const size = d.size ?? [28, 28]; // the data set's image size, which the server says
  pad.setDigit(d.pixels, size);
  drawingChanged({ kind: "pixels", pixels: d.pixels, size, label: d.label, name: d.name, index: d.index }, false);
  if (state.attr.method && !FAST.has(state.attr.method)) computeSlowAttribution();
}

const randomDigit = new Latest(); // a stroke before its answer arrives wins over it
$("random").onclick = async () => {
  const signal = randomDigit.next();
  try {
    const d = await getJSON("api/test-digits/random", { signal });
    if (!signal.aborted) showDigit({ ...d, pixels: b64bytes(d.pixels) });
  } catch (e) {
    if (!isAbort(e)) update((s) => { s.error = e.message; });
  }
};

const openInDrawView = (d) => { randomDigit.cancel(); showView("draw-view"); showDigit(d); };
const evaluation = new EvaluationView(openInDrawView);
const embedding = new EmbeddingView(openInDrawView);
const featuresView = new FeaturesView();
const architecture = new ArchitectureView($("arch-diagram"), (name) => {
  showView("draw-view");
  // An activation the compact view leaves out is in the conv → ReLU → pool view.
  if (name && state.result && !document.querySelector(`#stages figure[data-stage="${name}"]`)) {
    $("view").value = "pipeline";
    update((s) => { s.view = "pipeline"; });
  }
  const target = (name && document.querySelector(`#stages figure[data-stage="${name}"]`)) || $("pad");
  target.scrollIntoView({ block: "center" });
  target.classList.remove("flash");
  void target.offsetWidth; // restart the highlight
  target.classList.add("flash");
});
const trainView = new TrainView({
  onCheckpoint: () => refreshModels(), // the run's newest weights, in the picker
  onDelete: () => refreshModels(), // a deleted run leaves the picker
  onSnapshot: (runId) => embedding.follow(runId), // the Embedding tab grows a frame
});
const VIEWS = ["draw-view", "arch-view", "eval-view", "embed-view", "feat-view", "train-view"];

/** What the architecture view's thumbnails show: the prediction on screen, or null. */
function archShown() {
  const r = state.result;
  if (!r || r.model !== state.model) return null;
  const input = decodeMaps(r.res.input);
  return { stages: r.stages, input: input.maps[0], inputSize: input.shape };
}

function showView(id) {
  for (const v of VIEWS) $(v).hidden = v !== id;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === id));
  showModelIn(id);
}

/** The open view follows the chosen model. */
function showModelIn(id) {
  if (id === "arch-view") architecture.show(state.models.find((m) => m.id === state.model), state.info[state.model], archShown());
  if (id === "eval-view") evaluation.show(state.model);
  // While a run trains, the Embedding tab follows it until another model is picked.
  if (id === "embed-view" && !embedding.live) {
    embedding.classes = classesOf(state.model);
    embedding.show(state.model, state.models.find((m) => m.id === state.model).embedding);
  }
  if (id === "feat-view") featuresView.show(state.model, state.info[state.model]);
  if (id === "train-view") trainView.show();
}

document.querySelectorAll(".tab").forEach((t) => { t.onclick = () => showView(t.dataset.view); });
$("attr-method").onchange = onAttrChange;
$("attr-target").onchange = onAttrChange;
$("attr-compute").onclick = computeSlowAttribution;
/** The "class to explain" choices: the current model's classes, by name. */
function fillTargets() {
  const keep = $("attr-target").value;
  const names = classesOf(state.model);
  $("attr-target").replaceChildren(new Option("top class", ""),
    ...names.map((n, k) => new Option(n === String(k) ? `class ${k}` : `${k}: ${n}`, String(k))));
  if (Number(keep) < names.length) $("attr-target").value = keep;
}
$("model").onchange = (e) => pickModel(e.target.value);
function pickModel(id) {
  state.model = id;
  embedding.unfollow();
  fillTargets();
  drawingChanged(state.drawing.source, false); // the same drawing, asked of the new model
  if (state.attr.method && !FAST.has(state.attr.method)) computeSlowAttribution();
  showModelIn(VIEWS.find((v) => !$(v).hidden));
}
$("view").onchange = (e) => update((s) => { s.view = e.target.value; });
$("scale").onchange = (e) => update((s) => { s.scale = e.target.value; });
// The grids are sized to the window: repaint them (once the resizing pauses).
let resizing = null;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => render(true), 150); });

function fillModelPicker() {
  for (const m of state.models) state.info[m.id] = new Stages(m.stages, m.input_shape);
  $("model").replaceChildren(...state.models.map((m) => {
    const acc = m.metrics.test_accuracy;
    return new Option(acc ? `${m.id} (${(acc * 100).toFixed(2)} %)` : m.id, m.id);
  }));
  if (state.model) $("model").value = state.model;
}

/** The served models again: a training run's checkpoint joins them (or is updated), or a
 * deleted run leaves them (the page then shows the default model). */
async function refreshModels() {
  try {
    state.models = await getJSON("api/models");
  } catch (e) { if (!isAbort(e)) update((s) => { s.error = e.message; }); return; }
  fillModelPicker();
  if (state.model && !state.models.some((m) => m.id === state.model)) {
    $("model").value = state.models[0].id;
    pickModel(state.models[0].id);
  }
}

async function init() {
  let health;
  try {
    [state.models, health] = await Promise.all([getJSON("api/models"), getJSON("api/health")]);
  } catch (e) { update((s) => { s.error = e.message; }); return; }
  // The methods and which are live: the server's list (analysis/attribution.py), not ours.
  $("attr-method").replaceChildren(new Option("none", ""),
    ...health.attribution.map((a) => new Option(a.name, a.id)));
  for (const a of health.attribution) if (a.live) FAST.add(a.id);
  fillModelPicker();
  state.model = state.models[0].id;
  fillTargets();
  render();
  initGuide();
  document.body.dataset.ready = "1";
}
init();
