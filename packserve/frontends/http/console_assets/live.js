// Live: per model requests/s, average batch formed, queue and compute time, with a small chart.
import { $, el, fmt, sparkline, showError } from "./dom.js";
import { PERIOD_MS, poller } from "./stats.js";

let unsubscribe = null;

function render(live, error) {
  showError($("#live-error"), error);
  if (!live) return;
  const body = $("#live-table tbody");
  const names = [...live.keys()].sort();
  body.replaceChildren(...names.map((name) => {
    const m = live.get(name);
    return el("tr", { "data-model": name, "data-rate": m.rate.toFixed(3) },
      el("td", {}, name),
      el("td", { class: "num rate" }, fmt(m.rate)),
      el("td", { class: "num batch" }, fmt(m.batch, 2)),
      el("td", { class: "num queue" }, fmt(m.queueMs, 2)),
      el("td", { class: "num compute" }, fmt(m.computeMs, 2)),
      el("td", {}, sparkline(m.history)));
  }));
}

export function showLive() {
  $("#live-period").textContent = `${PERIOD_MS / 1000} s`;
  if (!unsubscribe) unsubscribe = poller.subscribe(render);
}

export function hideLive() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
