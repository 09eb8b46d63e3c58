// One poller of GET /v2/models/stats shared by the views that show live figures. It runs only
// while a view subscribes and the page is visible: a console nobody looks at costs nothing.
import { allStats } from "./api.js";

export const PERIOD_MS = 1500;
const HISTORY = 80;

function totals(entry) {
  const s = entry.inference_stats || {};
  const ns = (d) => (d && d.ns) || 0;
  return {
    success: (s.success && s.success.count) || 0,
    inferences: entry.inference_count || 0,
    executions: entry.execution_count || 0,
    queueNs: ns(s.queue),
    computeNs: ns(s.compute_input) + ns(s.compute_infer) + ns(s.compute_output),
  };
}

export function rates(before, after, seconds) {
  const requests = after.success - before.success;
  const executions = after.executions - before.executions;
  return {
    rate: seconds > 0 ? requests / seconds : 0,
    batch: executions > 0 ? (after.inferences - before.inferences) / executions : null,
    queueMs: requests > 0 ? (after.queueNs - before.queueNs) / requests / 1e6 : null,
    computeMs: requests > 0 ? (after.computeNs - before.computeNs) / requests / 1e6 : null,
    requests,
  };
}

export function snapshot(document) {
  const out = new Map();
  for (const entry of (document && document.model_stats) || []) {
    out.set(`${entry.name}`, totals(entry));
  }
  return out;
}

class StatsPoller {
  constructor() {
    this.listeners = new Set();
    this.previous = null;
    this.previousAt = 0;
    this.history = new Map();
    this.timer = null;
    document.addEventListener("visibilitychange", () => this.schedule());
  }

  subscribe(listener) {
    this.listeners.add(listener);
    this.schedule();
    return () => {
      this.listeners.delete(listener);
      this.schedule();
    };
  }

  schedule() {
    const wanted = this.listeners.size > 0 && !document.hidden;
    if (wanted && this.timer === null) {
      this.timer = setInterval(() => this.tick(), PERIOD_MS);
      this.tick();
    } else if (!wanted && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
      this.previous = null; // a gap would read as one long, slow interval
    }
  }

  async tick() {
    let current;
    try {
      current = snapshot(await allStats());
    } catch (error) {
      for (const listener of this.listeners) listener(null, error);
      return;
    }
    const now = performance.now();
    const live = new Map();
    if (this.previous) {
      const seconds = (now - this.previousAt) / 1000;
      for (const [name, after] of current) {
        const before = this.previous.get(name) || after;
        const figures = rates(before, after, seconds);
        const series = this.history.get(name) || [];
        series.push(figures.rate);
        if (series.length > HISTORY) series.shift();
        this.history.set(name, series);
        live.set(name, { ...figures, history: series });
      }
    }
    this.previous = current;
    this.previousAt = now;
    for (const listener of this.listeners) listener(live, null);
  }
}

export const poller = new StatsPoller();
