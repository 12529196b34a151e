// Hash routes (#/jobs/12?status=hung): every page has a URL that can be pasted
// into a bug report, and the server sees none of it.

const routes = [];
let current = null; // {box, controller}: the page shown
let onRender = () => {};

/** route("/jobs/:id", module): a page module exports mount(root, route). */
export function route(pattern, page) {
  const names = [];
  const regex = new RegExp("^" + pattern.replace(/:(\w+)/g, (_m, name) => {
    names.push(name);
    return "([^/]+)";
  }) + "$");
  routes.push({ regex, names, page });
}

export function parse(hash) {
  const raw = (hash || "").replace(/^#/, "") || "/";
  const [path, search] = raw.split("?", 2);
  return { path: path || "/", query: Object.fromEntries(new URLSearchParams(search || "")) };
}

export function href(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") { q.set(k, String(v)); }
  }
  const s = q.toString();
  return "#" + path + (s ? "?" + s : "");
}

/** Change the current page's query without leaving it (filters, sorting, paging). */
export function replaceQuery(query) {
  const { path } = parse(location.hash);
  history.replaceState(null, "", href(path, query));
}

export function currentController() { return current && current.controller; }

export async function render(root, context) {
  const { path, query } = parse(location.hash);
  for (const r of routes) {
    const m = r.regex.exec(path);
    if (!m) { continue; }
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
    // Each page mounts into a box of its own: a page still loading when the
    // reader moves on keeps writing into its box, which is no longer shown.
    const box = document.createElement("div");
    current = { box, controller: null };
    root.replaceChildren(box);
    onRender(r.page.name || path);
    const controller = await r.page.mount(box, { params, query, ...context });
    if (current.box === box) { current.controller = controller || null; }
    return;
  }
  root.replaceChildren(Object.assign(document.createElement("p"), { textContent: `No page at ${path}.` }));
}

export function start(root, context, renderHook) {
  onRender = renderHook || onRender;
  const go = () => render(root, context).then(() => root.focus({ preventScroll: true }));
  window.addEventListener("hashchange", go);
  return go();
}
