// Pipeline graph: an ensemble's steps as a DAG, left to right by dependency depth, with the models
// its region maps run per region, and each node's live requests/s.
import { cachedConfig, repositoryIndex } from "./api.js";
import { $, el, fmt, showError, svg } from "./dom.js";
import { poller } from "./stats.js";

const W = 168, H = 44, DX = 210, DY = 62, PAD = 16;
let unsubscribe = null;

export async function ensembles() {
  const index = await repositoryIndex();
  const ready = index.filter((e) => e.state === "READY");
  const configs = await Promise.all(ready.map((e) => cachedConfig(e.name, e.version).catch(() => null)));
  return ready.filter((_, i) => configs[i] && configs[i].platform === "ensemble").map((e) => e.name);
}

// Nodes {id, kind, label, model, col} and edges {from, to, region} of one ensemble config.
export async function layout(config) {
  const steps = (config.ensemble_scheduling && config.ensemble_scheduling.step) || [];
  const producer = new Map();
  const nodes = [];
  const edges = new Set();
  for (const input of config.input || []) {
    const id = `in:${input.name}`;
    nodes.push({ id, kind: "io", label: input.name, col: 0 });
    producer.set(input.name, { id, col: 0 });
  }
  // Steps in the order their inputs become available (the config may list them in any order).
  const pending = steps.map((step, i) => ({ step, i }));
  let guard = pending.length + 1;
  while (pending.length && guard-- > 0) {
    for (let k = 0; k < pending.length; k++) {
      const { step, i } = pending[k];
      const sources = Object.values(step.input_map || {});
      if (!sources.every((t) => producer.has(t))) continue;
      const col = 1 + Math.max(0, ...sources.map((t) => producer.get(t).col));
      const id = `step:${i}`;
      nodes.push({ id, kind: "step", label: step.model_name, model: step.model_name, col });
      for (const t of sources) edges.add(`${producer.get(t).id}|${id}|`);
      for (const t of Object.values(step.output_map || {})) producer.set(t, { id, col });
      pending.splice(k, 1);
      k--;
    }
  }
  if (pending.length) throw new Error(`steps ${pending.map((p) => p.step.model_name).join(", ")} read tensors no step produces`);
  const last = 1 + Math.max(0, ...nodes.map((n) => n.col));
  for (const output of config.output || []) {
    const id = `out:${output.name}`;
    nodes.push({ id, kind: "io", label: output.name, col: last });
    if (producer.has(output.name)) edges.add(`${producer.get(output.name).id}|${id}|`);
  }
  // Region maps name, in their parameters, the image model that cuts the regions (crop_model)
  // and the model they run on every region (model): step -> crop model -> target, drawn below it.
  const stepNodes = nodes.filter((n) => n.kind === "step");
  const stepConfigs = await Promise.all(stepNodes.map((n) => cachedConfig(n.model).catch(() => null)));
  let order = 0;
  stepNodes.forEach((node, i) => {
    const c = stepConfigs[i];
    const params = c && c.platform === "region_map" && c.parameters;
    if (!params || !params.model) return;
    let from = node.id;
    if (params.crop_model) {
      const id = `crop:${node.id}`;
      const name = params.crop_model.string_value;
      nodes.push({ id, kind: "crop", label: name, model: name, col: node.col, order: order++ });
      edges.add(`${from}|${id}|region`);
      from = id;
    }
    const id = `target:${node.id}`;
    const name = params.model.string_value;
    nodes.push({ id, kind: "target", label: name, model: name, col: node.col, order: order++ });
    edges.add(`${from}|${id}|region`);
  });
  return { nodes, edges: [...edges].map((e) => { const [from, to, region] = e.split("|"); return { from, to, region: !!region }; }) };
}

function draw({ nodes, edges }) {
  const columns = new Map();
  for (const node of nodes) {
    const list = columns.get(node.col) || [];
    list.push(node);
    columns.set(node.col, list);
  }
  const sources = new Map();
  for (const { from, to, region } of edges) if (!region) sources.set(to, [...(sources.get(to) || []), from]);
  const at = new Map(nodes.map((n) => [n.id, n]));
  let height = 0;
  // Column by column, each node near the mean row of what feeds it (fewer crossing edges);
  // a region map's crop model and target go under the steps of their column, in that order.
  for (const col of [...columns.keys()].sort((a, b) => a - b)) {
    const list = columns.get(col);
    for (const node of list) {
      const rows = (sources.get(node.id) || []).map((id) => at.get(id).row).filter((r) => r !== undefined);
      const below = node.kind === "target" || node.kind === "crop";
      node.key = below ? 1e6 + node.order : rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
    }
    list.sort((a, b) => a.key - b.key);
    list.forEach((node, r) => { node.row = r; node.x = PAD + node.col * DX; node.y = PAD + r * DY; });
    height = Math.max(height, PAD * 2 + list.length * DY);
  }
  const width = PAD * 2 + (Math.max(...nodes.map((n) => n.col)) + 1) * DX;
  const paths = edges.map(({ from, to, region }) => {
    const a = at.get(from), b = at.get(to);
    const [x1, y1] = region ? [a.x + W / 2, a.y + H] : [a.x + W, a.y + H / 2];
    const [x2, y2] = region ? [b.x + W / 2, b.y] : [b.x, b.y + H / 2];
    const bend = region ? `M${x1},${y1} L${x2},${y2}` : `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`;
    return svg("path", { class: region ? "edge region" : "edge", d: bend, "data-from": from, "data-to": to });
  });
  const boxes = nodes.map((n) => svg("g", { class: `node ${n.kind}`, "data-id": n.id, "data-model": n.model, transform: `translate(${n.x},${n.y})` },
    svg("rect", { width: W, height: H, rx: 6 }),
    svg("text", { x: 8, y: 18 }, n.label),
    n.model ? svg("text", { x: 8, y: 35, class: "rate" }, "– req/s") : null));
  return svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, "data-steps": nodes.filter((n) => n.kind === "step").length },
    ...paths, ...boxes);
}

function updateRates(live) {
  if (!live) return;
  for (const node of document.querySelectorAll("#graph-canvas .node[data-model]")) {
    const m = live.get(node.dataset.model);
    const label = node.querySelector("text.rate");
    if (m && label) {
      label.textContent = `${fmt(m.rate)} req/s`;
      node.dataset.rate = m.rate.toFixed(3);
    }
  }
}

async function drawSelected() {
  const name = $("#graph-model").value;
  const canvas = $("#graph-canvas");
  if (!name) {
    canvas.replaceChildren(el("p", { class: "hint" }, "No ensemble is loaded."));
    return;
  }
  try {
    canvas.replaceChildren(draw(await layout(await cachedConfig(name))));
    canvas.dataset.model = name;
    showError($("#graph-error"), null);
  } catch (error) {
    showError($("#graph-error"), error);
  }
}

export async function showGraph() {
  const select = $("#graph-model");
  if (!select.dataset.bound) {
    select.addEventListener("change", drawSelected);
    select.dataset.bound = "1";
  }
  try {
    const names = await ensembles();
    const keep = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
    await drawSelected();
  } catch (error) {
    showError($("#graph-error"), error);
  }
  if (!unsubscribe) unsubscribe = poller.subscribe((live, error) => { if (!error) updateRates(live); });
}

export function hideGraph() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
