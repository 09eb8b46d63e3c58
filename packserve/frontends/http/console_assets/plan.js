// Plan: read a plan.json written by `packserve plan` (in the browser; nothing is uploaded) and
// show its pods and per-model settings as a table and three plots.
import { $, el, fmt, showError, svg } from "./dom.js";

function bars(title, items, { limit, unit = "", pairLabel, digits = 1 } = {}) {
  // items: [{label, value, other?}]; `other` draws a grey bar beside (baseline, budget).
  const W = 420, rowH = 22, left = 150, top = 26;
  const height = top + items.length * rowH + 10;
  const top_value = Math.max(limit || 0, ...items.map((i) => Math.max(i.value, i.other || 0)), 1e-9);
  const scale = (v) => ((W - left - 60) * v) / top_value;
  const shapes = [svg("text", { x: 8, y: 16, "font-weight": 600 }, title)];
  items.forEach((item, k) => {
    const y = top + k * rowH;
    shapes.push(svg("text", { x: 8, y: y + 14 }, item.label));
    const h = item.other !== undefined ? 8 : 16;
    shapes.push(svg("rect", { class: "bar", x: left, y: y + 2, width: scale(item.value), height: h }));
    if (item.other !== undefined) shapes.push(svg("rect", { class: "bar alt", x: left, y: y + 11, width: scale(item.other), height: h }));
    shapes.push(svg("text", { x: left + scale(Math.max(item.value, item.other || 0)) + 4, y: y + 14 }, `${fmt(item.value, digits)}${unit}`));
  });
  if (limit) {
    const x = left + scale(limit);
    shapes.push(svg("line", { class: "limit", x1: x, x2: x, y1: top - 4, y2: height - 4 }));
  }
  if (pairLabel) shapes.push(svg("text", { x: W - 8, y: 16, "text-anchor": "end", fill: "#687380" }, pairLabel));
  return svg("svg", { class: "plot", width: W, height, viewBox: `0 0 ${W} ${height}` }, ...shapes);
}

const replicas = (pods) => pods.reduce((sum, p) => sum + (p.replicas || 0), 0);

export function renderPlan(plan) {
  if (!plan || typeof plan !== "object" || !Array.isArray(plan.pods)) {
    throw new Error("this is not a plan.json from `packserve plan`: it has no 'pods' list");
  }
  const baseline = Array.isArray(plan.baseline) ? plan.baseline : [];
  $("#plan-summary").replaceChildren(
    ...[
      ["Profiled on", plan.profile_device],
      ["Load", `${fmt(plan.requests_per_s, 0)} req/s × peak ${fmt(plan.peak_factor, 2)}`],
      ["p99 target", `${fmt(plan.p99_ms, 0)} ms`],
      ["Devices", `${replicas(plan.pods)} (one model per device: ${replicas(baseline)})`],
    ].map(([k, v]) => el("span", { class: "summary-item" }, el("b", {}, `${k}: `), String(v ?? "-"))));
  const models = plan.pods.flatMap((pod) => (pod.models || []).map((m) => ({ pod, m })));
  $("#plan-plots").replaceChildren(
    bars("Devices: plan vs one model per device", [{ label: "devices", value: replicas(plan.pods), other: replicas(baseline) }], { pairLabel: "grey: baseline", digits: 0 }),
    bars("Device busy at peak, per pod", plan.pods.map((p) => ({ label: p.name, value: 100 * (p.utilisation || 0) })), { limit: 100 * (plan.max_utilisation || 0), unit: "%" }),
    bars("Predicted p99 vs budget, per model (ms)", models.map(({ m }) => ({ label: m.name, value: m.predicted_p99_ms || 0, other: m.budget_ms || 0 })), { pairLabel: "grey: budget" }),
  );
  const columns = ["Pod", "Replicas", "Model", "Batch", "Instances", "Queue delay µs", "Calls/s per pod", "p99 ms", "Budget ms", "Busy %", "Memory MiB"];
  $("#plan-table thead").replaceChildren(el("tr", {}, ...columns.map((c) => el("th", {}, c))));
  $("#plan-table tbody").replaceChildren(...models.map(({ pod, m }) => el("tr", { "data-pod": pod.name, "data-model": m.name },
    el("td", {}, pod.name), el("td", { class: "num" }, String(pod.replicas)), el("td", {}, m.name),
    el("td", { class: "num" }, String(m.batch_size)), el("td", { class: "num" }, String(m.instances)),
    el("td", { class: "num" }, String(m.max_queue_delay_us)), el("td", { class: "num" }, fmt(m.rate_per_s, 1)),
    el("td", { class: "num" }, fmt(m.predicted_p99_ms, 1)), el("td", { class: "num" }, fmt(m.budget_ms, 1)),
    el("td", { class: "num" }, fmt(100 * (m.utilisation || 0), 0)), el("td", { class: "num" }, fmt((m.memory_bytes || 0) / 2 ** 20, 0)))));
}

async function open(file) {
  try {
    let plan;
    try {
      plan = JSON.parse(await file.text());
    } catch (error) {
      throw new Error(`${file.name} is not JSON: ${error.message}`);
    }
    renderPlan(plan);
    showError($("#plan-error"), null);
  } catch (error) {
    $("#plan-plots").replaceChildren();
    $("#plan-table tbody").replaceChildren();
    showError($("#plan-error"), error);
  }
}

export function showPlan() {
  const input = $("#plan-file");
  if (!input.dataset.bound) {
    input.dataset.bound = "1";
    input.addEventListener("change", (e) => e.target.files[0] && open(e.target.files[0]));
  }
}
