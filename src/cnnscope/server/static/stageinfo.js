// What each stage of a served model is, from its StageInfo (`/api/models`): kind, shape,
// receptive field and the conv it follows. Nothing on the page reads a kind from a name.

/** Kinds whose stages follow a conv (`parent`) and show that conv's channels again. */
const FOLLOWERS = new Set(["act", "pool", "norm"]);

export class Stages {
  /** `infos`: a model's StageInfo list, in forward order; `inputShape`: its (C, H, W) input. */
  constructor(infos, inputShape) {
    this.list = infos;
    this.inputShape = inputShape;
    this.byName = new Map(infos.map((s) => [s.name, s]));
  }

  get(name) { return this.byName.get(name); }

  get names() { return this.list.map((s) => s.name); }

  /** [H, W] of one input image: what a test digit must be to be sent as pixels. */
  get inputSize() { return this.inputShape.slice(-2); }

  /**
   * The stages as rows of the draw view: a conv with the stages that follow it side by
   * side ("compact" leaves out a conv's activation: its pool shows what survives of it),
   * and the vector stages (fc, logits) together in one row.
   */
  rows(view) {
    const out = [];
    for (const s of this.list) {
      const prev = out[out.length - 1];
      if (view !== "pipeline" && s.kind === "act" && s.parent) continue;
      if (prev && FOLLOWERS.has(s.kind) && s.parent && s.parent === prev[0]) prev.push(s.name);
      // Vector stages (fc, logits) share a row: each is one small tile.
      else if (prev && s.shape.length === 1 && prev.every((n) => this.get(n).shape.length === 1)) prev.push(s.name);
      else out.push([s.name]);
    }
    return out;
  }

  /** The conv whose channels `name`'s maps are (itself for a conv), or null. */
  convOf(name) {
    const s = this.get(name);
    if (!s) return null;
    if (s.kind === "conv") return s.name;
    return FOLLOWERS.has(s.kind) && s.parent ? s.parent : null;
  }

  /**
   * The stage whose unit a map or value of `name` stands for (for preferred images and top
   * examples): the conv of a spatial stage, or a vector stage itself.
   */
  unitStage(name) {
    const s = this.get(name);
    if (!s) return null;
    return s.shape.length === 3 ? this.convOf(name) : s.name;
  }

  /** Stages worth a gallery of preferred images: every stage but the followers of a conv. */
  featureStages() { return this.list.filter((s) => !FOLLOWERS.has(s.kind)).map((s) => s.name); }

  /** True where units have no receptive field: each sees the whole image. */
  seesAll(name) { return this.get(name)?.rf_size == null; }
}
