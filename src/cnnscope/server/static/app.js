// State and wiring: the pad produces drawings, the Predictor answers, the render
// functions paint. Nothing here computes pixels itself.
import { Predictor, getJSON } from "./api.js";
import { EmbeddingView } from "./embed.js";
import { EvaluationView } from "./eval.js";
import { FeaturesView, preferredImage, showTopExamples } from "./features.js";
import { Pad } from "./pad.js";
import {
  DERIVE, b64bytes, decodeStage, drawGray, drawLegend, drawOverlay, drawStage, fmt, makeScale, range,
  tileLayout,
} from "./render.js";

const FAST = new Set(["saliency", "gradxinput", "gradcam"]);

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  model: null,
  view: "compact",
  scale: "map",
  last: null, // the last response
  stages: {}, // name → {shape, maps} (sent and derived)
  source: null, // {kind: "png"} or {kind: "pixels", pixels, label, index}
  filters: {}, // `${model}/${stage}` → FilterWeights
  attr: { method: "", target: "" }, // attribution shown in the draw view
};
// Exposed for tests and benchmarks: the time the last full repaint took.
window.cnnscope = { state, lastRenderMs: null, renders: 0, render: () => render() };


// ---- predictions ------------------------------------------------------------
const predictor = new Predictor(onResult, (e) => setStatus(`error: ${e.message}`));

function inputBody() {
  return state.source?.kind === "pixels"
    ? { pixels: Array.from(state.source.pixels, (v) => v / 255), model: state.model }
    : { png: pad.toPNG(), model: state.model };
}

function requestPrediction() {
  if (pad.isEmpty()) return clearOutputs();
  const body = inputBody();
  const { method, target } = state.attr;
  if (FAST.has(method)) {
    body.explain = method;
    if (target !== "") body.target = Number(target);
  }
  predictor.request(body);
}

// While drawing, ask at most every 60 ms (the Predictor also drops stale answers).
let timer = null;
function throttledPredict() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; requestPrediction(); }, 60);
}

function onResult(res, ms) {
  state.last = res;
  state.stages = {};
  for (const [name, enc] of Object.entries(res.stages)) state.stages[name] = decodeStage(enc);
  for (const d of res.derived) state.stages[d.name] = DERIVE[d.op](state.stages[d.source]);
  state.stages.logits = { shape: [res.logits.length], maps: [Float32Array.from(res.logits)] };
  render();
  if (res.attribution) showAttribution(res.input, res.attribution);
  else if (state.attr.method && !FAST.has(state.attr.method)) staleAttribution();
  setStatus(`${res.model}: ${res.predicted} · server ${res.server_ms.toFixed(1)} ms · round trip ${ms.toFixed(0)} ms`);
}

// ---- rendering --------------------------------------------------------------
function setStatus(text) { $("status").textContent = text; }

function clearOutputs() {
  state.last = null;
  state.stages = {};
  $("bars").replaceChildren();
  $("stages").replaceChildren();
  $("seen").getContext("2d").clearRect(0, 0, 28, 28);
  setStatus("draw a digit");
}

function render() {
  const t0 = performance.now();
  const res = state.last;
  const input = decodeStage(res.input);
  drawGray($("seen").getContext("2d"), input.maps[0], 28, 28);
  renderBars(res);
  renderStages(res.order);
  window.cnnscope.lastRenderMs = performance.now() - t0;
  window.cnnscope.renders++;
}

function renderBars(res) {
  const bars = $("bars");
  if (bars.children.length !== res.probabilities.length) {
    bars.replaceChildren(...res.probabilities.map((_, k) => {
      const row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = `<span>${k}</span><div class="track"><div class="fill"></div></div><span class="pct"></span>`;
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

/** Group stage names into rows: pipeline view puts conv → relu → pool of a layer side by side. */
function rows(order) {
  if (state.view === "pipeline") {
    const out = [];
    for (const name of order) {
      const layer = name.match(/\d+$/)?.[0];
      const prev = out[out.length - 1];
      if (prev && layer && /^(relu|pool)/.test(name) && prev[0].endsWith(layer)) prev.push(name);
      else out.push([name]);
    }
    return out;
  }
  return order.filter((n) => !n.startsWith("relu")).map((n) => [n]);
}

function scalesFor(names) {
  // per map: each map its own range; per layer: one range per stage; global: one for all.
  const all = names.flatMap((n) => state.stages[n].maps);
  const global = makeScale(...range(all));
  const out = {};
  for (const n of names) {
    const maps = state.stages[n].maps;
    if (state.scale === "global") out[n] = { legend: global, maps: maps.map(() => global) };
    else if (state.scale === "stage") { const s = makeScale(...range(maps)); out[n] = { legend: s, maps: maps.map(() => s) }; }
    else out[n] = { legend: makeScale(...range(maps)), maps: maps.map((m) => makeScale(...range([m]))), perMap: true };
  }
  return out;
}

function renderStages(order) {
  const container = $("stages");
  const groups = rows(order);
  const key = `${state.model}|${state.view}|${groups.map((g) => g.join(",")).join(";")}`;
  if (container.dataset.key !== key) {
    container.dataset.key = key;
    container.replaceChildren(...groups.map(buildRow));
  }
  const names = groups.flat();
  const scales = scalesFor(names);
  for (const name of names) {
    const stage = state.stages[name];
    const fig = container.querySelector(`[data-stage="${name}"]`);
    const canvas = fig.querySelector("canvas.grid");
    const layout = tileLayout(stage.shape);
    if (canvas.width !== layout.width || canvas.height !== layout.height) {
      canvas.width = layout.width;
      canvas.height = layout.height;
      // As large as the panel allows: up to 8 screen pixels per value, 28 for a short
      // vector such as the 10 logits.
      const perValue = Math.min(layout.width <= 16 ? 28 : 8, 860 / layout.width);
      canvas.style.width = `${Math.round(layout.width * perValue)}px`;
    }
    canvas._layout = layout;
    drawStage(canvas.getContext("2d"), stage, layout, scales[name].maps);
    const s = scales[name];
    drawLegend(fig.querySelector(".legend canvas").getContext("2d"), s.legend);
    fig.querySelector(".legend .lo").textContent = s.perMap ? "each map:" : fmt(s.legend.lo);
    fig.querySelector(".legend .hi").textContent = s.perMap ? (s.legend.signed ? "−|max| … +|max|" : "0 … max") : fmt(s.legend.hi);
  }
}

function buildRow(group) {
  const div = document.createElement("div");
  div.className = "stage";
  const row = document.createElement("div");
  row.className = "row";
  for (const name of group) {
    const shape = state.stages[name].shape;
    const fig = document.createElement("figure");
    fig.dataset.stage = name;
    fig.innerHTML = `<div class="stage-head"><h2>${name}</h2><span class="shape">${shape.join("×")}</span>
      <span class="legend"><span class="lo"></span><canvas width="120" height="10"></canvas><span class="hi"></span></span></div>
      <canvas class="grid" data-stage="${name}"></canvas>`;
    const canvas = fig.querySelector("canvas.grid");
    canvas.addEventListener("mousemove", (e) => hover(e, name));
    canvas.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    canvas.addEventListener("click", (e) => openDetail(e, name));
    row.append(fig);
  }
  div.append(row);
  return div;
}

function tileAt(e, name) {
  const canvas = e.currentTarget;
  const layout = canvas._layout;
  const r = canvas.getBoundingClientRect();
  const x = ((e.clientX - r.left) / r.width) * layout.width;
  const y = ((e.clientY - r.top) / r.height) * layout.height;
  const col = Math.floor(x / (layout.tw + layout.gap)), row = Math.floor(y / (layout.th + layout.gap));
  const index = row * layout.cols + col;
  if (layout.count === 1) {
    const unit = Math.floor(y) * layout.tw + Math.floor(x);
    return { index: 0, unit: unit < state.stages[name].shape[0] ? unit : null };
  }
  return index < layout.count ? { index, unit: null } : null;
}

function hover(e, name) {
  const t = tileAt(e, name);
  const tip = $("tooltip");
  if (!t) { tip.hidden = true; return; }
  const map = state.stages[name].maps[t.index];
  const [lo, hi] = range([map]);
  tip.textContent = t.unit !== null
    ? `${name} unit ${t.unit}: ${fmt(map[t.unit])}\nlayer min ${fmt(lo)}, max ${fmt(hi)}`
    : `${name} channel ${t.index}\nmin ${fmt(lo)}, max ${fmt(hi)}\nclick to enlarge`;
  tip.style.left = `${e.clientX + 12}px`;
  tip.style.top = `${e.clientY + 12}px`;
  tip.hidden = false;
}

async function openDetail(e, name) {
  const t = tileAt(e, name);
  if (!t) return;
  const stage = state.stages[name];
  const map = stage.maps[t.index];
  const shape = stage.shape.length === 3 ? stage.shape.slice(1) : [tileLayout(stage.shape).th, tileLayout(stage.shape).tw];
  const [h, w] = shape;
  const canvas = $("detail-map");
  canvas.width = w; canvas.height = h;
  const [lo, hi] = range([map]);
  const scale = makeScale(lo, hi);
  drawStage(canvas.getContext("2d"), { shape: stage.shape.length === 3 ? [1, h, w] : stage.shape, maps: [map] },
    stage.shape.length === 3 ? tileLayout([1, h, w]) : tileLayout(stage.shape), [scale]);
  $("detail-title").textContent = stage.shape.length === 3 ? `${name}, channel ${t.index}` : name;
  $("detail-range").textContent = `min ${fmt(lo)}, max ${fmt(hi)}`;
  const conv = stage.shape.length === 3 ? `conv${name.match(/\d+$/)?.[0]}` : null;
  $("detail-filter-fig").hidden = true;
  $("detail-pref-fig").hidden = true;
  $("detail-top-title").hidden = true;
  $("detail-top").replaceChildren();
  $("detail").showModal();
  // The unit behind this map: a conv layer's channel, an fc unit, or a class.
  const unitStage = conv && state.last.order.includes(conv) ? conv : stage.shape.length === 1 ? name : null;
  const unit = stage.shape.length === 3 ? t.index : t.unit;
  if (unitStage && unit !== null) showUnitLinks(unitStage, unit);
  if (conv && state.last.order.includes(conv)) {
    const k = `${state.model}/${conv}`;
    try {
      state.filters[k] ??= await getJSON(`api/models/${encodeURIComponent(state.model)}/filters/${conv}`);
      drawFilter(state.filters[k], t.index, conv);
    } catch (err) { $("detail-filter-caption").textContent = err.message; }
  }
}

async function showUnitLinks(stage, unit) {
  try {
    $("detail-top-title").textContent = `The test digits ${stage}:${unit} likes most`;
    $("detail-top-title").hidden = false;
    const pixels = await preferredImage(state.model, stage, unit);
    $("detail-pref-caption").textContent = pixels
      ? `${stage}:${unit}'s preferred input (regularized)`
      : "its preferred input is rendering: see the Features tab";
    if (pixels) drawGray($("detail-pref").getContext("2d"), Array.from(pixels, (v) => v / 255), 28, 28);
    $("detail-pref-fig").hidden = false;
    await showTopExamples($("detail-top"), state.model, stage, unit);
  } catch (e) { $("detail-top-title").textContent = `error: ${e.message}`; }
}

function drawFilter(f, channel, conv) {
  const [, cin, kh, kw] = f.shape;
  const q = b64bytes(f.data);
  const maps = [];
  for (let i = 0; i < cin; i++) {
    const m = new Float32Array(kh * kw);
    for (let j = 0; j < kh * kw; j++) m[j] = ((q[((channel * cin) + i) * kh * kw + j] - 127.5) / 127.5) * f.scale;
    maps.push(m);
  }
  const stage = { shape: [cin, kh, kw], maps };
  const layout = tileLayout(stage.shape, 8);
  const canvas = $("detail-filter");
  canvas.width = layout.width; canvas.height = layout.height;
  const scale = makeScale(...range(maps).map((v, i) => (i === 0 ? Math.min(v, -1e-6) : v)));
  drawStage(canvas.getContext("2d"), stage, layout, maps.map(() => scale));
  $("detail-filter-caption").textContent = `${conv} filter ${channel}: ${cin} input channel${cin > 1 ? "s" : ""} × ${kh}×${kw}, blue < 0 < red`;
  $("detail-filter-fig").hidden = false;
}

// ---- attribution ------------------------------------------------------------
function showAttribution(input, a) {
  const x = decodeStage(input).maps[0];
  const m = decodeStage(a.map).maps[0];
  drawOverlay($("attr").getContext("2d"), x, m);
  const extra = a.details.baseline ? `; baseline: ${a.details.baseline}` : "";
  const empty = m.every((v) => v === 0) ? " — empty map: nothing here raises this class" : "";
  $("attr-note").textContent = `${a.method} for class ${a.target}: red raises it, blue lowers it${extra}${empty}`;
}

function staleAttribution() {
  $("attr").getContext("2d").clearRect(0, 0, 28, 28);
  $("attr-note").textContent = "press Compute for this drawing";
}

async function computeSlowAttribution() {
  if (pad.isEmpty()) return;
  const body = { ...inputBody(), method: state.attr.method };
  if (state.attr.target !== "") body.target = Number(state.attr.target);
  $("attr-note").textContent = `computing ${state.attr.method}…`;
  try {
    const r = await fetch("api/explain", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(json.detail);
    showAttribution(json.input, json.attribution);
    $("attr-note").textContent += ` (${json.server_ms.toFixed(0)} ms)`;
  } catch (e) { $("attr-note").textContent = `error: ${e.message}`; }
}

function onAttrChange() {
  state.attr = { method: $("attr-method").value, target: $("attr-target").value };
  const slow = state.attr.method && !FAST.has(state.attr.method);
  $("attr-compute").hidden = !slow;
  $("attr").hidden = !state.attr.method;
  if (!state.attr.method) { $("attr").getContext("2d").clearRect(0, 0, 28, 28); $("attr-note").textContent = ""; }
  else if (slow) { staleAttribution(); if (!pad.isEmpty()) computeSlowAttribution(); }
  else if (!pad.isEmpty()) requestPrediction();
}

// ---- wiring -----------------------------------------------------------------
const pad = new Pad($("pad"), (why) => {
  if (why === "draw" && state.source?.kind === "pixels") state.source = { kind: "png" };
  state.source ??= { kind: "png" };
  $("digit-note").textContent = "";
  if (why === "clear") { state.source = null; clearOutputs(); } else throttledPredict();
});
$("clear").onclick = () => pad.clear();
$("undo").onclick = () => pad.undo();
/** Put a test digit ({index, label, pixels: Uint8Array}) on the pad and predict it. */
function showDigit(d) {
  pad.setDigit(d.pixels);
  state.source = { kind: "pixels", pixels: d.pixels, label: d.label, index: d.index };
  $("digit-note").textContent = `test image #${d.index}, label ${d.label}`;
  requestPrediction();
  if (state.attr.method && !FAST.has(state.attr.method)) computeSlowAttribution();
}

$("random").onclick = async () => {
  try {
    const d = await getJSON("api/test-digits/random");
    showDigit({ ...d, pixels: b64bytes(d.pixels) });
  } catch (e) { setStatus(`error: ${e.message}`); }
};

const openInDrawView = (d) => { showView("draw-view"); showDigit(d); };
const evaluation = new EvaluationView(openInDrawView);
const embedding = new EmbeddingView(openInDrawView);
const featuresView = new FeaturesView();
const stagesOf = (id) => state.models.find((m) => m.id === id).stages.map((s) => s.name);

function showView(id) {
  for (const v of ["draw-view", "eval-view", "embed-view", "feat-view"]) $(v).hidden = v !== id;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === id));
  if (id === "eval-view") evaluation.show(state.model);
  if (id === "embed-view") embedding.show(state.model);
  if (id === "feat-view") featuresView.show(state.model, stagesOf(state.model));
}
document.querySelectorAll(".tab").forEach((t) => { t.onclick = () => showView(t.dataset.view); });
$("attr-method").onchange = onAttrChange;
$("attr-target").onchange = onAttrChange;
$("attr-compute").onclick = computeSlowAttribution;
for (let k = 0; k < 10; k++) $("attr-target").append(new Option(`class ${k}`, String(k)));
$("model").onchange = (e) => {
  state.model = e.target.value;
  if (!pad.isEmpty()) requestPrediction();
  if (!$("eval-view").hidden) evaluation.show(state.model);
  if (!$("embed-view").hidden) embedding.show(state.model);
  if (!$("feat-view").hidden) featuresView.show(state.model, stagesOf(state.model));
};
$("view").onchange = (e) => { state.view = e.target.value; if (state.last) render(); };
$("scale").onchange = (e) => { state.scale = e.target.value; if (state.last) render(); };

async function init() {
  try {
    state.models = await getJSON("api/models");
  } catch (e) { setStatus(`error: ${e.message}`); return; }
  $("model").replaceChildren(...state.models.map((m) => {
    const o = document.createElement("option");
    o.value = m.id;
    const acc = m.metrics.test_accuracy;
    o.textContent = acc ? `${m.id} (${(acc * 100).toFixed(2)} %)` : m.id;
    return o;
  }));
  state.model = state.models[0].id;
  setStatus("draw a digit");
  document.body.dataset.ready = "1";
}
init();
