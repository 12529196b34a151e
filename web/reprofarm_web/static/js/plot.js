// A small line plot drawn as inline SVG (no library): a value after N runs, as a
// step line (a value holds until the next run changes it), with one dashed
// reference line and its label. Missing values (null) leave a gap.

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 240;
const M = { left: 56, right: 16, top: 14, bottom: 38 };

function el(tag, attrs, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) { node.setAttribute(k, v); }
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** 1, 2 or 5 times a power of ten: a tick step of about span/count. */
export function niceStep(span, count = 5) {
  const raw = Math.max(span / count, 1e-12);
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

/** An axis: value -> pixel (clamped to the plot), and its ticks.
 * {min, max, log}: a log axis has a tick per power of ten. */
function axis({ min, max, log, integer }, from, to) {
  const f = log ? Math.log10 : (v) => v;
  const lo = f(min);
  const hi = f(max) === lo ? lo + 1 : f(max);
  const at = (v) => from + ((Math.min(hi, Math.max(lo, f(v))) - lo) / (hi - lo)) * (to - from);
  const ticks = [];
  if (log) {
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e += 1) { ticks.push(10 ** e); }
  } else {
    const step = Math.max(integer ? 1 : 0, niceStep(hi - lo));
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) { ticks.push(v); }
  }
  return { at, ticks };
}

function tickLabel(v) { return Number(v.toPrecision(6)).toString(); }

/** plot({points: [{x, y}], x: {max, label}, y: {min, max, log, integer, label},
 * line: {y, label}, title}): an <svg role="img"> whose aria-label is ``title``. */
export function plot({ id, points, x, y, line, title }) {
  const X = axis({ min: 0, max: Math.max(1, x.max), integer: true }, M.left, W - M.right);
  const Y = axis(y, H - M.bottom, M.top);
  const svg = el("svg", { id, class: "plot", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title },
    el("title", {}, title));
  const grid = el("g", { class: "grid" });
  for (const v of Y.ticks) {
    grid.append(
      el("line", { x1: M.left, x2: W - M.right, y1: Y.at(v), y2: Y.at(v) }),
      el("text", { x: M.left - 6, y: Y.at(v) + 4, "text-anchor": "end" }, tickLabel(v)));
  }
  for (const v of X.ticks) {
    grid.append(el("text", { x: X.at(v), y: H - M.bottom + 16, "text-anchor": "middle" }, tickLabel(v)));
  }
  grid.append(
    el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
    el("text", { class: "label", x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, x.label),
    el("text", { class: "label", x: 12, y: H / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${H / 2})` }, y.label));
  svg.append(grid);
  if (line) {
    svg.append(el("g", { class: "reference" },
      el("line", { x1: M.left, x2: W - M.right, y1: Y.at(line.y), y2: Y.at(line.y) }),
      el("text", { x: W - M.right - 4, y: Y.at(line.y) - 5, "text-anchor": "end" }, line.label)));
  }
  svg.append(el("path", { class: "trace", d: stepPath(points, X.at, Y.at) }));
  const last = [...points].reverse().find((p) => p.y !== null && p.y !== undefined);
  if (last) { svg.append(el("circle", { class: "trace-end", cx: X.at(last.x), cy: Y.at(last.y), r: 3.5 })); }
  return svg;
}

/** "M x y H x V y ...": each value holds until the next point; a null breaks the line. */
function stepPath(points, atX, atY) {
  let d = "";
  let open = false;
  for (const p of points) {
    if (p.y === null || p.y === undefined) { open = false; continue; }
    const px = atX(p.x).toFixed(1);
    const py = atY(p.y).toFixed(1);
    d += open ? ` H ${px} V ${py}` : ` M ${px} ${py}`;
    open = true;
  }
  return d.trim() || "M 0 0";
}
