// Models: the repository index with each ready model's config (platform, instances, batch size).
import { cachedConfig, forgetConfigs, loadModel, repositoryIndex, unloadModel } from "./api.js";
import { $, el, showError } from "./dom.js";

const CONTROL_MODE = (document.querySelector('meta[name="packserve-model-control-mode"]') || {}).content || "none";
// Triton allows load/unload only in EXPLICIT mode; the server refuses them otherwise anyway.
export const CAN_CONTROL = CONTROL_MODE === "explicit";

function instances(config) {
  const groups = config.instance_group || [];
  if (!groups.length) return "-";
  return groups.map((g) => `${g.count || 1} × ${(g.kind || "KIND_AUTO").replace("KIND_", "")}`).join(", ");
}

function controlButton(entry, refresh) {
  if (!CAN_CONTROL) return "";
  const ready = entry.state === "READY";
  const action = ready ? unloadModel : loadModel;
  return el("button", {
    type: "button",
    class: ready ? "unload" : "load",
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await action(entry.name);
        showError($("#models-error"), null);
      } catch (error) {
        showError($("#models-error"), error);
      }
      forgetConfigs();
      refresh();
    },
  }, ready ? "Unload" : "Load");
}

async function row(entry, refresh) {
  let config = null;
  if (entry.state === "READY") {
    try {
      config = await cachedConfig(entry.name, entry.version);
    } catch {
      config = null; // unloaded between the index and this call: the row still shows the state
    }
  }
  const state = entry.state || "UNKNOWN";
  return el("tr", { "data-model": entry.name },
    el("td", { class: "name" }, entry.name),
    el("td", { class: "version" }, entry.version || "-"),
    el("td", {},
      el("span", { class: `state state-${state}` }, state),
      entry.reason ? el("div", { class: "reason" }, entry.reason) : null),
    el("td", {}, config ? config.platform || config.backend || "-" : "-"),
    el("td", {}, config ? instances(config) : "-"),
    el("td", { class: "num" }, config ? String(config.max_batch_size ?? 0) : "-"),
    el("td", {}, controlButton(entry, refresh)));
}

export async function showModels() {
  $("#control-hint").textContent = CAN_CONTROL
    ? "Model control mode EXPLICIT: models can be loaded and unloaded here."
    : `Model control mode ${CONTROL_MODE.toUpperCase()}: loading and unloading are off (serve with --model-control-mode explicit to allow them).`;
  const body = $("#models-table tbody");
  try {
    const index = await repositoryIndex();
    const rows = await Promise.all(index.map((entry) => row(entry, showModels)));
    body.replaceChildren(...rows);
    body.parentElement.dataset.loaded = String(index.length);
    showError($("#models-error"), null);
  } catch (error) {
    showError($("#models-error"), error);
  }
}
