// The wire format of activation maps, decoded: base64 uint8 maps, each quantised between
// its own min and max, into Float32Arrays; and the stages the page derives itself (a ReLU
// of a sent conv, a 2×2 max-pool of that ReLU) instead of receiving them twice.

/** base64 → Uint8Array */
export function b64bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * An EncodedStage → {shape, maps: Float32Array[]}: one array per map (a channel of a
 * conv stage, or the whole vector of an fc stage); value = min + q / 255 · (max − min).
 */
export function decodeMaps(enc) {
  const q = b64bytes(enc.data);
  const n = enc.min.length;
  const size = q.length / n;
  const maps = [];
  for (let m = 0; m < n; m++) {
    const lo = enc.min[m], span = (enc.max[m] - enc.min[m]) / 255;
    const arr = new Float32Array(size);
    for (let i = 0; i < size; i++) arr[i] = lo + q[m * size + i] * span;
    maps.push(arr);
  }
  return { shape: enc.shape, maps };
}

/** ReLU of every map. */
export function relu(stage) {
  return { shape: stage.shape, maps: stage.maps.map((m) => m.map((v) => (v > 0 ? v : 0))) };
}

/** 2×2 max-pool, stride 2, of every (H, W) map. */
export function maxpool2(stage) {
  const [c, h, w] = stage.shape;
  const oh = Math.floor(h / 2), ow = Math.floor(w / 2);
  const maps = stage.maps.map((m) => {
    const out = new Float32Array(oh * ow);
    for (let y = 0; y < oh; y++)
      for (let x = 0; x < ow; x++) {
        const i = 2 * y * w + 2 * x;
        out[y * ow + x] = Math.max(m[i], m[i + 1], m[i + w], m[i + w + 1]);
      }
    return out;
  });
  return { shape: [c, oh, ow], maps };
}

/** The derivations a PredictResponse's `derived` entries name (`op`). */
export const DERIVE = { relu, maxpool2 };

/**
 * Every stage of a PredictResponse, name → {shape, maps}: sent, derived, and the logits,
 * under the name of the model's last stage (`logits` for the built-ins, `head.fc` for a
 * model of your own): `res.order` ends with it.
 */
export function decodeStages(res) {
  const stages = {};
  for (const [name, enc] of Object.entries(res.stages)) stages[name] = decodeMaps(enc);
  for (const d of res.derived) stages[d.name] = DERIVE[d.op](stages[d.source]);
  const last = res.order[res.order.length - 1];
  stages[last] = { shape: [res.logits.length], maps: [Float32Array.from(res.logits)] };
  return stages;
}

/**
 * One output channel of FilterWeights → {shape: [in, kH, kW], maps}: its weights per input
 * channel; value = (q − 127.5) / 127.5 · scale.
 */
export function decodeFilter(f, channel) {
  const [, cin, kh, kw] = f.shape;
  const q = b64bytes(f.data);
  const maps = [];
  for (let i = 0; i < cin; i++) {
    const m = new Float32Array(kh * kw);
    for (let j = 0; j < kh * kw; j++) m[j] = ((q[(channel * cin + i) * kh * kw + j] - 127.5) / 127.5) * f.scale;
    maps.push(m);
  }
  return { shape: [cin, kh, kw], maps };
}

/** The h×w uint8 pixels of `images` (base64, unit after unit; 28×28 unless given) for image `k`. */
export const digitAt = (bytes, k, [h, w] = [28, 28]) => bytes.subarray(k * h * w, (k + 1) * h * w);
