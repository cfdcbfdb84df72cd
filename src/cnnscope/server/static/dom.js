// DOM helpers shared by every view: the page's only definitions of `$` and `el`.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * A new element: `el("figure", {className: "x", dataset: {unit: 3}}, child, "text")`.
 * Properties are assigned as is, except `dataset`, whose entries are copied.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) for (const [k, v] of Object.entries(dataset)) node.dataset[k] = String(v);
  node.append(...children);
  return node;
}

/** A canvas of `width` × `height` pixels. */
export const canvas = (width, height = width) => el("canvas", { width, height });
