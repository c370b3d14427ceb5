// api.js: every call the page makes to the services, and how failures read.
//
// Each service answers errors as {"error": {"code", "message"}}; `ApiError` carries the
// status, the stable code and the service's message, and `describe` turns any failure
// (including "the service is not running") into one sentence for the page.

import { session } from "./session.js";

export const services = {
  app: { name: "App Service", base: "" },
  import: { name: "Import Service", base: "" },
  storage: { name: "Storage Service", base: "" },
};

/** Loads /config.json (the API base URLs, set by the web service's configuration). */
export async function loadConfig() {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`/config.json answered ${response.status}`);
  const config = await response.json();
  services.app.base = config.app_api_url;
  services.import.base = config.import_api_url;
  services.storage.base = config.storage_url;
  return config;
}

export class ApiError extends Error {
  constructor({ status = 0, code, message, service, requestId = null, retryAfter = null }) {
    super(message);
    this.status = status;
    this.code = code;
    this.service = service;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** Turns a non-2xx response into an ApiError, reading the error envelope if there is one. */
export async function errorFrom(response, service) {
  let code = `http-${response.status}`;
  let message = `${service.name} answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body?.error?.code) {
      code = body.error.code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's HTML page, say): keep the status line.
  }
  return new ApiError({
    status: response.status,
    code,
    message,
    service: service.name,
    requestId: response.headers.get("x-request-id"),
    retryAfter: response.headers.get("retry-after"),
  });
}

function unreachable(service) {
  return new ApiError({
    code: "service-unreachable",
    message: `Cannot reach the ${service.name} at ${service.base}. Is the stack still running?`,
    service: service.name,
  });
}

/**
 * Calls `service` (one of `services`) at `path`; JSON in and out. Adds the seller's token
 * unless `auth: false`. A 401 signs the seller out (the token expired or was revoked).
 */
export async function call(service, path, { method = "GET", body, headers = {}, auth = true, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (auth && session.token) init.headers.Authorization = `Bearer ${session.token}`;
  let response;
  try {
    response = await fetch(`${service.base}${path}`, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw unreachable(service);
  }
  if (!response.ok) {
    const error = await errorFrom(response, service);
    if (response.status === 401 && auth) session.expire(error.message);
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}

/** One readable sentence for any failure, with the stable code kept for support. */
export function describe(error) {
  if (error instanceof ApiError) {
    let text = error.message;
    if (error.status === 429 && error.retryAfter) text += ` Try again in ${error.retryAfter} s.`;
    return { text, code: error.code };
  }
  if (error?.code && error?.message) return { text: error.message, code: error.code };
  return { text: error?.message || String(error), code: null };
}

/** Query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
