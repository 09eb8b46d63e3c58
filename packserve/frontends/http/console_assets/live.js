// Live: per model requests/s, average batch formed, queue and compute time, with a small chart.
// Rows are updated in place (only the figures and the chart change), so a redraw stays cheap.
import { $, el, fmt, sparkline, showError } from "./dom.js";
import { PERIOD_MS, poller } from "./stats.js";

let unsubscribe = null;
const rows = new Map();

function rowFor(name) {
  let row = rows.get(name);
  if (!row) {
    const cell = (cls) => el("td", { class: `num ${cls}` });
    row = el("tr", { "data-model": name }, el("td", {}, name), cell("rate"), cell("batch"), cell("queue"), cell("compute"), el("td", { class: "chart" }));
    rows.set(name, row);
  }
  return row;
}

function render(live, error) {
  showError($("#live-error"), error);
  if (!live) return;
  const names = [...live.keys()].sort();
  const body = $("#live-table tbody");
  const wanted = names.map(rowFor);
  if (wanted.length !== body.children.length || wanted.some((row, i) => body.children[i] !== row)) {
    body.replaceChildren(...wanted);
  }
  for (const name of names) {
    const m = live.get(name);
    const row = rows.get(name);
    row.dataset.rate = m.rate.toFixed(3);
    row.querySelector(".rate").textContent = fmt(m.rate);
    row.querySelector(".batch").textContent = fmt(m.batch, 2);
    row.querySelector(".queue").textContent = fmt(m.queueMs, 2);
    row.querySelector(".compute").textContent = fmt(m.computeMs, 2);
    row.querySelector(".chart").replaceChildren(sparkline(m.history));
  }
}

export function showLive() {
  $("#live-period").textContent = `${PERIOD_MS / 1000} s`;
  if (!unsubscribe) unsubscribe = poller.subscribe(render);
}

export function hideLive() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
