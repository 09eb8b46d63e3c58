// Tabs: one view at a time (from the URL's #hash); a view's polling stops when it is left.
import { serverMetadata } from "./api.js";
import { $ } from "./dom.js";
import { hideGraph, showGraph } from "./graph.js";
import { hideLive, showLive } from "./live.js";
import { showModels } from "./models.js";
import { showPlan } from "./plan.js";
import { showTry } from "./tryit.js";

const VIEWS = {
  models: { show: showModels },
  live: { show: showLive, hide: hideLive },
  graph: { show: showGraph, hide: hideGraph },
  try: { show: showTry },
  plan: { show: showPlan },
};
let current = null;

function route() {
  const name = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "models";
  if (current && current !== name && VIEWS[current].hide) VIEWS[current].hide();
  current = name;
  for (const view of Object.keys(VIEWS)) $(`#view-${view}`).hidden = view !== name;
  for (const tab of document.querySelectorAll("#tabs a")) tab.classList.toggle("active", tab.dataset.view === name);
  VIEWS[name].show();
}

window.addEventListener("hashchange", route);
route();
serverMetadata()
  .then((m) => { $("#server").textContent = `${m.name} ${m.version}`; })
  .catch(() => { $("#server").textContent = "server metadata unavailable"; });
