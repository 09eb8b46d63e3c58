// Try it: send one image through a pipeline (POST /v2/pipelines/{model}) and draw what it found.
// Output names follow the demo's conventions (*BOXES, *LANDMARKS, *QUADS with TEXT, *LABELS with
// their scores); every output is also in the raw JSON. Model output reaches the page only as
// textContent and attribute values, never as markup.
import { allStats, cachedConfig, modelMetadata, repositoryIndex, runPipeline } from "./api.js";
import { $, el, fmt, showError, svg } from "./dom.js";
import { rates, snapshot } from "./stats.js";

const RAW_LIMIT = 1_000_000; // characters of raw JSON shown
let chosen = null; // the File or Blob to send
let previewUrl = null;

const flat = (value) => (Array.isArray(value) ? value.flat(Infinity) : [value]);
function rows(value, width) {
  const values = flat(value).map(Number);
  const out = [];
  for (let i = 0; i + width <= values.length; i += width) out.push(values.slice(i, i + width));
  return out;
}

export async function imagePipelines() {
  const index = (await repositoryIndex()).filter((e) => e.state === "READY");
  const metas = await Promise.all(index.map((e) => modelMetadata(e.name).catch(() => null)));
  const fit = index.filter((_, i) => metas[i] && metas[i].inputs.length === 1 && metas[i].inputs[0].datatype === "BYTES");
  // Whole pipelines (ensembles) first: they are what people want to try.
  const configs = await Promise.all(fit.map((e) => cachedConfig(e.name, e.version).catch(() => null)));
  const ensemble = (i) => (configs[i] && configs[i].platform === "ensemble" ? 0 : 1);
  return fit.map((e, i) => [ensemble(i), e.name]).sort((a, b) => a[0] - b[0]).map(([, name]) => name);
}

function scoresFor(outputs, name) {
  for (const candidate of [name.replace(/LABELS$/, "SCORES"), `${name}_SCORE`, `${name}_SCORES`]) {
    if (candidate !== name && candidate in outputs) return flat(outputs[candidate]).map(Number);
  }
  return [];
}

function overlay(outputs, width, height) {
  const shapes = [];
  for (const [name, value] of Object.entries(outputs)) {
    if (/BOXES$/.test(name)) {
      rows(value, 4).forEach(([x0, y0, x1, y1], i) => shapes.push(svg("rect", {
        class: /FACE/.test(name) ? "face-box" : "face-box box", "data-output": name, "data-index": i,
        x: x0, y: y0, width: x1 - x0, height: y1 - y0 })));
    } else if (/LANDMARKS$/.test(name)) {
      for (const row of rows(value, 10)) {
        for (let k = 0; k < 10; k += 2) shapes.push(svg("circle", { class: "landmark", cx: row[k], cy: row[k + 1], r: Math.max(2, width / 200) }));
      }
    } else if (/QUADS$/.test(name)) {
      const strings = flat(outputs.TEXT || []).map(String);
      rows(value, 8).forEach((q, i) => {
        shapes.push(svg("polygon", { class: "text-quad", "data-index": i, points: [0, 2, 4, 6].map((k) => `${q[k]},${q[k + 1]}`).join(" ") }));
        if (strings[i] !== undefined) {
          shapes.push(svg("text", { class: "overlay-label text-string", x: q[0], y: Math.max(14, q[1] - 4), "data-index": i }, strings[i]));
        }
      });
    }
  }
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, "data-width": width, "data-height": height }, ...shapes);
}

function findings(outputs) {
  const parts = [];
  const faces = rows(outputs.FACE_BOXES || [], 4);
  if ("FACE_BOXES" in outputs) {
    const scores = flat(outputs.FACE_SCORES || []).map(Number);
    parts.push(el("h3", {}, `Faces: ${faces.length}`),
      el("ul", { class: "faces" }, ...faces.map((b, i) => el("li", {}, `[${b.map((v) => v.toFixed(0)).join(", ")}] score ${fmt(scores[i], 3)}`))));
  }
  if ("TEXT" in outputs) {
    const scores = flat(outputs.TEXT_SCORES || []).map(Number);
    parts.push(el("h3", {}, `Text: ${flat(outputs.TEXT).length} lines`),
      el("ul", { class: "texts" }, ...flat(outputs.TEXT).map((t, i) => el("li", { class: "text-item" }, `${t}`, el("span", { class: "hint" }, `  ${fmt(scores[i], 2)}`)))));
  }
  for (const [name, value] of Object.entries(outputs)) {
    if (name === "TEXT" || !flat(value).some((v) => typeof v === "string")) continue;
    const scores = scoresFor(outputs, name);
    parts.push(el("h3", {}, name),
      el("ul", { class: "labels", "data-output": name }, ...flat(value).map((label, i) => el("li", { class: "label-item" }, `${label}`, el("span", { class: "hint" }, `  ${fmt(scores[i], 3)}`)))));
  }
  return parts;
}

async function stepsOf(name) {
  const config = await cachedConfig(name);
  const steps = ((config.ensemble_scheduling && config.ensemble_scheduling.step) || []).map((s) => s.model_name);
  return [name, ...steps];
}

function timing(before, after, names, totalMs) {
  const body = $("#try-timing tbody");
  const shown = [...after.keys()].filter((n) => names.includes(n) || (after.get(n).success !== (before.get(n) || {}).success));
  const rowsOut = shown.map((n) => {
    const r = rates(before.get(n) || after.get(n), after.get(n), 1);
    return r.requests > 0 ? el("tr", { "data-model": n }, el("td", {}, n), el("td", { class: "num" }, fmt(r.queueMs, 2)), el("td", { class: "num" }, fmt(r.computeMs, 2))) : null;
  }).filter(Boolean);
  rowsOut.push(el("tr", { class: "total" }, el("td", {}, "round trip (browser)"), el("td", {}), el("td", { class: "num" }, fmt(totalMs, 1))));
  body.replaceChildren(...rowsOut);
}

function loadImage(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null); // the server's answer explains a file the browser cannot show
    img.src = url;
  });
}

async function run() {
  const model = $("#try-model").value;
  const stage = $("#try-stage");
  showError($("#try-error"), null);
  $("#try-json").textContent = "";
  $("#try-findings").replaceChildren();
  $("#try-timing tbody").replaceChildren();
  stage.replaceChildren();
  delete stage.dataset.done;
  if (!chosen) return showError($("#try-error"), "Pick or drop an image first.");
  if (!model) return showError($("#try-error"), "No loaded model takes a single encoded image.");
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(chosen);
  const img = await loadImage(previewUrl);
  try {
    const names = await stepsOf(model).catch(() => [model]);
    const before = snapshot(await allStats());
    const started = performance.now();
    const result = await runPipeline(model, chosen);
    const totalMs = performance.now() - started;
    const after = snapshot(await allStats());
    const raw = JSON.stringify(result, null, 1);
    // A model that returns whole tensors (a decoded image) would make the page crawl: show a part.
    $("#try-json").textContent = raw.length > RAW_LIMIT ? `${raw.slice(0, RAW_LIMIT)}\n... ${raw.length - RAW_LIMIT} more characters` : raw;
    const outputs = result.outputs || {};
    if (img) stage.append(img, overlay(outputs, img.naturalWidth, img.naturalHeight));
    $("#try-findings").replaceChildren(...findings(outputs));
    timing(before, after, names, totalMs);
    stage.dataset.done = "ok";
  } catch (error) {
    showError($("#try-error"), `Could not run '${model}' on ${chosen.name || "the image"}: ${error.message}`);
    stage.dataset.done = "error";
  }
}

function choose(file) {
  chosen = file || null;
  $("#try-drop").textContent = chosen ? `${chosen.name} (${chosen.size} bytes)` : "Drop an image here";
}

export async function showTry() {
  const select = $("#try-model");
  if (!select.dataset.bound) {
    select.dataset.bound = "1";
    $("#try-file").addEventListener("change", (e) => choose(e.target.files[0]));
    $("#try-run").addEventListener("click", run);
    $("#try-show-json").addEventListener("change", (e) => { $("#try-json").hidden = !e.target.checked; });
    const drop = $("#try-drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      choose(e.dataTransfer.files[0]);
      run();
    });
  }
  try {
    const names = await imagePipelines();
    const keep = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
  } catch (error) {
    showError($("#try-error"), error);
  }
}
