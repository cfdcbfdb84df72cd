// The Features view: each unit's preferred image, and the test digits that excite it.
import { getJSON } from "./api.js";
import { b64bytes, drawGray } from "./render.js";

const $ = (id) => document.getElementById(id);

function grayCanvas(pixels, offset = 0, scale = 255) {
  const c = document.createElement("canvas");
  c.width = c.height = 28;
  drawGray(c.getContext("2d"), Array.from(pixels.subarray(offset, offset + 784), (v) => v / scale), 28, 28);
  return c;
}

/** The test digits that excite `stage:unit` most, drawn into `container` with their fields. */
export async function showTopExamples(container, model, stage, unit) {
  container.replaceChildren();
  const top = await getJSON(`api/top-examples/${encodeURIComponent(model)}/${stage}/${unit}`);
  container.replaceChildren(...top.map((t) => {
    const f = document.createElement("figure");
    const c = grayCanvas(b64bytes(t.pixels));
    if (t.field) { // the receptive field of the strongest position
      const ctx = c.getContext("2d");
      ctx.strokeStyle = "#f5a524";
      ctx.lineWidth = 1;
      ctx.strokeRect(t.field[1] + 0.5, t.field[0] + 0.5, t.field[3] - t.field[1] - 1, t.field[2] - t.field[0] - 1);
    }
    const cap = document.createElement("figcaption");
    cap.textContent = `#${t.index} (${t.label}) ${t.score.toFixed(2)}`;
    f.append(c, cap);
    return f;
  }));
}

/** `stage:unit`'s preferred image (Uint8Array of 784) if rendered; starts rendering if not. */
export async function preferredImage(model, stage, unit) {
  const job = await getJSON(`api/features/${encodeURIComponent(model)}/${stage}`);
  if (job.status !== "ready") return null;
  return b64bytes(job.images).subarray(unit * 784, unit * 784 + 784);
}

export class FeaturesView {
  constructor() {
    this.model = null;
    this.key = null;
    this.images = null;
    this.timer = null;
    $("feat-stage").onchange = () => this.load();
    $("feat-method").onchange = () => this.load();
  }

  show(model, stages) {
    if (this.model !== model) {
      this.model = model;
      const pick = stages.filter((s) => !s.startsWith("relu") && !s.startsWith("pool"));
      $("feat-stage").replaceChildren(...pick.map((s) => new Option(s, s)));
    }
    this.load();
  }

  async load() {
    const stage = $("feat-stage").value, method = $("feat-method").value;
    const key = `${this.model}/${stage}/${method}`;
    if (key === this.key && this.images) return;
    this.key = key;
    this.images = null;
    clearTimeout(this.timer);
    $("feat-gallery").replaceChildren();
    const poll = async () => {
      if (this.key !== key) return;
      let job;
      try {
        job = await getJSON(`api/features/${encodeURIComponent(this.model)}/${stage}?method=${method}`);
      } catch (e) { $("feat-status").textContent = `error: ${e.message}`; return; }
      if (this.key !== key) return;
      if (job.status === "ready") {
        $("feat-status").textContent = `${job.total} units`;
        this.images = b64bytes(job.images);
        this.render(stage, job.total);
      } else if (job.status === "failed") {
        $("feat-status").textContent = `failed: ${job.error}`;
      } else {
        $("feat-status").textContent = `rendering ${job.done} of ${job.total} units…`;
        this.timer = setTimeout(poll, 500);
      }
    };
    poll();
  }

  render(stage, total) {
    $("feat-gallery").replaceChildren(...Array.from({ length: total }, (_, u) => {
      const fig = document.createElement("figure");
      fig.dataset.unit = u;
      const cap = document.createElement("figcaption");
      cap.textContent = String(u);
      fig.append(grayCanvas(this.images, u * 784), cap);
      fig.onclick = () => this.openUnit(stage, u, fig);
      return fig;
    }));
  }

  async openUnit(stage, unit, fig) {
    document.querySelectorAll("#feat-gallery figure.selected").forEach((f) => f.classList.remove("selected"));
    fig.classList.add("selected");
    $("feat-unit-title").textContent = `${stage}:${unit}: its image and the 9 test digits it likes most`;
    const img = $("feat-unit-image");
    drawGray(img.getContext("2d"), Array.from(this.images.subarray(unit * 784, unit * 784 + 784), (v) => v / 255), 28, 28);
    img.hidden = false;
    await showTopExamples($("feat-top"), this.model, stage, unit);
  }
}
