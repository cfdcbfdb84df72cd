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

// ---- the drawing, sent ----------------------------------------------------------
// The pad is opaque grey (white strokes on black), yet the browser's toDataURL writes it
// as RGBA: four bytes a pixel for the server to inflate and fold back into one (1.0 ms of
// server CPU per drawing against 0.4 ms for a one-channel PNG; bench/serve_many.py sends
// the one-channel kind). greyPNG writes the same pixels as an 8-bit grey PNG, which the
// server decodes to exactly the same image (decode.py reads grey v as (v+v+v)·255/(3·255²)).

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A PNG chunk: length, type, data, CRC of type + data. */
function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function dataURL(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return "data:image/png;base64," + btoa(bin);
}

/**
 * The canvas as a PNG data URL, one grey byte a pixel when every pixel is opaque grey
 * (R = G = B, alpha 255); otherwise, or without CompressionStream, the browser's RGBA.
 */
export async function greyPNG(canvas) {
  const { width: w, height: h } = canvas;
  const rgba = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  if (typeof CompressionStream === "undefined") return canvas.toDataURL("image/png");
  const raw = new Uint8Array(h * (w + 1)); // each row: filter byte 0 (none), then its pixels
  for (let y = 0, i = 0; y < h; y++) {
    let o = y * (w + 1) + 1;
    for (let x = 0; x < w; x++, i += 4, o++) {
      const v = rgba[i];
      if (rgba[i + 1] !== v || rgba[i + 2] !== v || rgba[i + 3] !== 255) return canvas.toDataURL("image/png");
      raw[o] = v;
    }
  }
  // "deflate" is the zlib format, which is what IDAT holds.
  const zipped = new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate")));
  const idat = new Uint8Array(await zipped.arrayBuffer());
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, w);
  new DataView(ihdr.buffer).setUint32(4, h);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8 bits, grey, deflate, filter set 0, no interlace
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (png.set(p, at), at + p.length), 0);
  return dataURL(png);
}
