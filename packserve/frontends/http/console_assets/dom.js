// DOM helpers. Every string from the server (model names, labels, OCR text, error messages) goes
// in through text nodes or setAttribute, never parsed as HTML: a label holding markup stays text.
const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function $(selector) {
  return document.querySelector(selector);
}

export function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = error instanceof Error ? error.message : String(error);
}

export function fmt(value, digits = 1) {
  if (value === undefined || value === null || !Number.isFinite(value)) return "-";
  return value.toFixed(digits);
}

// A line chart of the last values, drawn in a fixed 100x24 box.
export function sparkline(values, ceiling) {
  const top = Math.max(ceiling || 0, ...values, 1e-9);
  const step = values.length > 1 ? 100 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(23 - (v / top) * 22).toFixed(1)}`);
  return svg("svg", { class: "spark", viewBox: "0 0 100 24", preserveAspectRatio: "none",
    "data-points": values.length, "data-last": values.length ? values[values.length - 1] : 0 },
    svg("polyline", { points: points.join(" ") }));
}
