// The api client: the bearer token, JSON calls, downloads and who the token is.
//
// The token arrives once in the link `reprofarm up` prints (#token=...) or
// through the sign-in form. It is kept in this tab's sessionStorage and the
// link is rewritten at once (history.replaceState), so it never stays in the
// address bar, the browser history or a Referer, and never reaches a server log
// (a fragment is not sent to the server).

const KEY = "reprofarm-token";

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** Move a #token=... from the address into sessionStorage; returns the hash left. */
export function takeTokenFromLocation() {
  const hash = location.hash.slice(1);
  if (!hash.startsWith("token=")) { return; }
  const token = new URLSearchParams(hash).get("token");
  if (token) { sessionStorage.setItem(KEY, token); }
  history.replaceState(null, "", location.pathname + location.search + "#/");
}

export function setToken(token) { sessionStorage.setItem(KEY, token.trim()); }
export function hasToken() { return Boolean(sessionStorage.getItem(KEY)); }

function headers(extra) {
  return { Authorization: "Bearer " + (sessionStorage.getItem(KEY) || ""), ...extra };
}

async function failure(response, path) {
  let message = `${path}: HTTP ${response.status}`;
  let field;
  try {
    const body = await response.json();
    if (body && body.detail && body.detail.message) {
      message = body.detail.message;
      field = body.detail.field;
    }
  } catch (_ignored) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, message, field);
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") { q.set(k, String(v)); }
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

export async function get(path, params) {
  const url = path + query(params);
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) { throw await failure(response, path); }
  return response.json();
}

export async function post(path, body, params) {
  const response = await fetch(path + query(params), {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) { throw await failure(response, path); }
  return response.json();
}

/** GET with If-None-Match: returns {status, etag, body} (body null on 304). */
export async function getIfChanged(path, etag) {
  const response = await fetch(path, { headers: headers(etag ? { "If-None-Match": etag } : {}) });
  if (response.status === 304) { return { status: 304, etag, body: null }; }
  if (!response.ok) { throw await failure(response, path); }
  return { status: response.status, etag: response.headers.get("ETag"), body: await response.json() };
}

export async function text(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) { throw await failure(response, path); }
  return response.text();
}

/** Fetch an authorised file and hand it to the browser as a download. Returns
 * the bytes' sha256 where the browser can compute it (a secure context). */
export async function download(path, filename) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) { throw await failure(response, path); }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  if (!(window.crypto && crypto.subtle)) { return null; }
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

let me = null;

/** Who the token is ({name, role, can_submit, can_admin}), asked once per load. */
export async function whoami() {
  if (!me) { me = await get("/api/v1/whoami"); }
  return me;
}

export function forgetWhoami() { me = null; }

/** POST raw bytes or text (a dump to triage) and read the JSON answer. */
export async function postRaw(path, body, params) {
  const response = await fetch(path + query(params), {
    method: "POST",
    headers: headers({ "Content-Type": "application/octet-stream" }),
    body,
  });
  if (!response.ok) { throw await failure(response, path); }
  return response.json();
}
