// The public KServe v2 API, the statistics extension and /v2/pipelines: nothing else.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `${path}: the server did not answer (${error.message})`);
  }
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const reason = body && typeof body.error === "string" ? body.error : text || response.statusText;
    throw new ApiError(response.status, `${options.method || "GET"} ${path} answered ${response.status}: ${reason}`);
  }
  return body;
}

const model = (name) => `/v2/models/${encodeURIComponent(name)}`;

export const serverMetadata = () => api("/v2");
export const repositoryIndex = () => api("/v2/repository/index", { method: "POST", body: "{}" });
export const modelConfig = (name) => api(`${model(name)}/config`);
export const modelMetadata = (name) => api(model(name));
export const allStats = () => api("/v2/models/stats");
export const loadModel = (name) =>
  api(`/v2/repository/models/${encodeURIComponent(name)}/load`, { method: "POST", body: "{}" });
export const unloadModel = (name) =>
  api(`/v2/repository/models/${encodeURIComponent(name)}/unload`, { method: "POST", body: "{}" });
export const runPipeline = (name, blob) =>
  api(`/v2/pipelines/${encodeURIComponent(name)}`, {
    method: "POST",
    body: blob,
    headers: { "Content-Type": blob.type || "application/octet-stream" },
  });

// Ready models' configs, fetched at most once per name and version until forgotten.
const configs = new Map();
export async function cachedConfig(name, version) {
  const key = `${name}/${version || ""}`;
  if (!configs.has(key)) configs.set(key, modelConfig(name).catch((error) => { configs.delete(key); throw error; }));
  return configs.get(key);
}
export function forgetConfigs() {
  configs.clear();
}
