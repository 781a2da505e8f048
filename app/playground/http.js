// HTTP against the service's own API (same origin). The API key (PARLEY_AUTH=keys) is kept
// in sessionStorage: this tab only.
import { $, status } from "./dom.js";

export const KEY = "parley.key";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

export function showKeyForm(why) {
  $("key-form").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY);
  status(why);
}

export async function call(method, path, { json, body, type, extra } = {}) {
  const init = { method, headers: headers(extra) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = type || "application/octet-stream";
  }
  const response = await fetch(path, init);
  if (response.status === 401) showKeyForm("this service needs an API key");
  return response;
}

export async function api(method, path, options) {
  const response = await call(method, path, options);
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response.status === 204 ? null : response.json();
}

// Run `work`; an ApiError is shown with `show` instead of thrown (anything else is a bug).
export async function shown(work, show) {
  try {
    return await work();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    show(err);
    return undefined;
  }
}

export const enc = encodeURIComponent;
export const convPath = (id) => `/conversations/${enc(id)}`;

// The operations this service has (from its OpenAPI document): a control whose operation
// is missing is never shown.
const operations = new Set();

export async function loadOperations() {
  const document = await api("GET", "/openapi.json");
  for (const ops of Object.values(document.paths || {})) {
    for (const op of Object.values(ops)) if (op && op.operationId) operations.add(op.operationId);
  }
}

export const has = (operationId) => operations.has(operationId);
