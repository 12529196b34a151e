// "What matters": the overview's panel on GET /api/v1/explain. Factors ranked by
// evidence (penalised LR test, BH q), each level's odds ratio against its factor's
// reference with the 95% interval as a forest plot (inline SVG, log scale), and the
// factors the runs cannot tell apart said in words (docs/statistics.md, "Explain").

import { h, table } from "../components.js";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 22;
const WIDTH = 520;
const LABEL = 200;

function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) { node.setAttribute(k, v); }
  for (const child of children) { node.append(child instanceof Node ? child : document.createTextNode(String(child))); }
  return node;
}

function reading(f) {
  if (f.q === null) { return "no test (aliased away)"; }
  if (f.q < 0.001) { return "strong evidence"; }
  if (f.q < 0.05) { return "evidence (q < 0.05)"; }
  return "no evidence";
}

function ratio(x) { return x >= 100 || x < 0.01 ? x.toExponential(1) : x.toPrecision(2); }

/** One row per non-reference level with an effect: point and 95% interval, log scale. */
export function forestPlot(factors) {
  const rows = factors.flatMap((f) => f.levels
    .filter((lv) => !lv.reference && lv.odds_ratio !== null)
    .map((lv) => ({ f, lv, ref: f.levels.find((r) => r.reference).level })));
  if (!rows.length) { return h("p", { class: "muted" }, "No effect to plot."); }
  const logs = rows.flatMap(({ lv }) => [lv.ci95_low, lv.ci95_high]).map(Math.log10);
  const lo = Math.min(-1, Math.floor(Math.min(...logs)));
  const hi = Math.max(1, Math.ceil(Math.max(...logs)));
  const x = (v) => LABEL + ((Math.log10(v) - lo) / (hi - lo)) * (WIDTH - LABEL - 24);
  const height = ROW * (rows.length + 1);
  const svg = s("svg", { id: "forest", width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": "odds ratios with 95% intervals, log scale; the line marks no effect (1)" });
  svg.append(s("line", { x1: x(1), x2: x(1), y1: 0, y2: height - ROW, stroke: "#888", "stroke-dasharray": "3 3" }));
  for (let d = lo; d <= hi; d += 1) {
    const tick = Math.abs(d) <= 2 ? String(10 ** d) : `1e${d}`;
    svg.append(s("text", { x: x(10 ** d), y: height - 6, "text-anchor": "middle", "font-size": 10 }, tick));
  }
  rows.forEach(({ f, lv, ref }, i) => {
    const y = ROW * i + ROW / 2;
    const strong = f.q !== null && f.q < 0.05;
    const colour = strong ? "#b42318" : "#555";
    const g = s("g", { class: "effect", "data-factor": f.factor, "data-level": lv.level });
    g.append(s("title", {}, `${f.factor}=${lv.level} vs ${ref}: odds ratio ${ratio(lv.odds_ratio)}, 95% ${ratio(lv.ci95_low)} to ${ratio(lv.ci95_high)}`));
    g.append(s("text", { x: 0, y: y + 4, "font-size": 11 }, `${f.factor}=${lv.level} vs ${ref}`.slice(0, 34)));
    g.append(s("line", { x1: x(lv.ci95_low), x2: x(lv.ci95_high), y1: y, y2: y, stroke: colour, "stroke-width": 2 }));
    g.append(s("circle", { cx: x(lv.odds_ratio), cy: y, r: 4, fill: colour }));
    svg.append(g);
  });
  return svg;
}

export function whatMatters(report) {
  if (!report.factors.length) {
    const why = report.says.length ? report.says.join("; ")
      : "Every counted run under these filters shares one level of each factor: nothing to compare.";
    return h("div", { id: "what-matters" }, h("p", { class: "muted" }, why));
  }
  const ranked = table({
    id: "factors",
    caption: `Factors ranked by evidence over ${report.runs} counted runs (${report.hangs} hangs): `
      + "Firth-penalised binomial model, likelihood-ratio test per factor, q: Benjamini-Hochberg.",
    columns: [
      { key: "factor", label: "Factor", render: (f) => [f.factor, ...f.aliased_with].join(" = ") },
      { key: "q", label: "q", numeric: true, render: (f) => (f.q === null ? "–" : f.q.toPrecision(2)) },
      { key: "reading", label: "Reading", render: (f) => (f.q !== null && f.q < 0.05 ? h("strong", {}, reading(f)) : reading(f)) },
    ],
    rows: report.factors,
  });
  const warnings = report.aliasing.map((a) => h("p", { class: "warning aliased", role: "note" }, a.says
    + (a.separate_with.length ? ` Cells to add: ${a.separate_with.map((c) => Object.entries(c).map(([k, v]) => `${k}=${v}`).join(" with ")).join("; ")}.` : "")));
  const notes = report.says.map((line) => h("p", { class: "warning" }, line));
  const modifiers = report.stratified.filter((st) => st.breslow_day_p !== null && st.breslow_day_p < 0.05)
    .map((st) => h("p", { class: "hint" }, st.says));
  return h("div", { id: "what-matters" }, ranked,
    h("figure", {}, forestPlot(report.factors),
      h("figcaption", {}, `Odds ratio of each level against its factor's reference (1 = no effect), 95% interval: ${report.interval}.`)),
    warnings, notes, modifiers);
}
