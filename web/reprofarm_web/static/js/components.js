// Shared pieces of the pages: a DOM builder, tables with sortable headers, the
// heatmap's rate cells, filter bars, pagers, badges, bars with whiskers.

import * as fmt from "./format.js";

/** h("a", {href: "#/"}, "text", child...): an element; attributes starting with
 * "on" are listeners, `class`/`text`/`dataset` do what they say. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) { continue; }
    if (k.startsWith("on")) { node.addEventListener(k.slice(2), v); }
    else if (k === "class") { node.className = v; }
    else if (k === "dataset") { Object.assign(node.dataset, v); }
    else if (k === "style") { node.setAttribute("style", v); }
    else { node.setAttribute(k, v === true ? "" : v); }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) { continue; }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function link(href, text, attrs) { return h("a", { href, ...attrs }, text); }

export function section(title, ...children) {
  return h("section", { "aria-label": title }, h("h2", {}, title), ...children);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

export function badge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

/** A table whose headers sort it: columns are {key, label, render(row), sortable,
 * numeric}; ``sort`` is {key, desc}; onSort(key) is called from a header button. */
export function table({ id, caption, columns, rows, sort, onSort, empty, rowAttrs }) {
  const head = h("tr", {}, columns.map((c) => {
    const active = sort && sort.key === c.key;
    const ariaSort = active ? (sort.desc ? "descending" : "ascending") : c.sortable ? "none" : null;
    const label = c.sortable && onSort
      ? h("button", { type: "button", class: "sort", onclick: () => onSort(c.key) },
        c.label, active ? (sort.desc ? " ▼" : " ▲") : "")
      : c.label;
    return h("th", { scope: "col", "aria-sort": ariaSort, class: c.numeric ? "num" : null }, label);
  }));
  const body = rows.length
    ? rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => {
      const value = c.render ? c.render(row) : row[c.key];
      return value instanceof Node && value.tagName === "TD"
        ? value
        : h("td", { class: c.numeric ? "num" : null }, value);
    })))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty || "nothing yet"))];
  return h("table", { id },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, head), h("tbody", {}, body));
}

/** An interval wider than this is uncertain: the cell says so (a dashed border). */
export const WIDE = 0.5;

/** Too few runs to say anything: no hang seen, and the 95% interval still
 * reaches past half the scale (three runs or fewer). A hang seen always says
 * something (the bug is there), however few the runs: such a cell keeps its
 * colour, dashed while its interval is wide. */
export function uninformative(cell) {
  return !cell || !cell.runs || (cell.hangs === 0 && cell.ci95_high > WIDE);
}

function wide(cell) { return cell && cell.runs && cell.ci95_high - cell.ci95_low > WIDE; }

/** One hue (red), lightness carrying the rate on a log scale, so it reads
 * without telling colours apart; the numbers are always printed beside it. */
export function rateColour(value, mode) {
  if (!value) { return null; }
  const t = mode === "per_million"
    ? (Math.log10(value) + 2) / 5 // 0.01 .. 1000 per million iterations
    : (Math.log10(value) + 3) / 3; // 0.1% .. 100% of runs
  const c = Math.min(1, Math.max(0, t));
  const lightness = 92 - 58 * c;
  return { background: `hsl(0, 70%, ${lightness}%)`, dark: lightness < 58 };
}

/** A heatmap cell: colour, the rate, k/n and the interval (all as text too). */
export function rateCell(cell, mode, extraClass) {
  if (!cell) { return h("td", { class: "cell none" }, h("span", { class: "muted" }, "no runs")); }
  const value = mode === "per_million" ? cell.hangs_per_million_iterations : cell.hit_rate;
  const grey = uninformative(cell);
  const colour = grey ? null : rateColour(value, mode);
  const rate = mode === "per_million" ? `${fmt.perMillion(value)} /M it.` : fmt.pct(cell.hit_rate);
  const iv = fmt.interval(cell.ci95_low, cell.ci95_high);
  const title = `${fmt.kOfN(cell.hangs, cell.runs)} runs hung, hit rate ${fmt.pct(cell.hit_rate)}, `
    + `95% interval ${iv}; ${fmt.perMillion(cell.hangs_per_million_iterations)} hangs per million `
    + `iterations (${fmt.count(cell.iterations)} iterations); ${cell.errors} errors and `
    + `${cell.lost} lost not counted${grey ? "; too few runs to say anything" : wide(cell) ? "; few runs: a wide interval" : ""}`;
  const classes = ["cell", grey ? "grey" : "", !grey && wide(cell) ? "wide" : "", cell.hangs ? "hot" : "",
    colour && colour.dark ? "dark" : "",
    extraClass || ""].filter(Boolean).join(" ");
  return h("td", {
    class: classes,
    style: colour ? `background:${colour.background}` : null,
    title,
    dataset: { k: cell.hangs, n: cell.runs },
  },
  h("span", { class: "rate" }, rate),
  h("span", { class: "kn" }, fmt.kOfN(cell.hangs, cell.runs)),
  h("span", { class: "ci" }, iv));
}

export function legend(mode) {
  const stops = mode === "per_million" ? [0.01, 0.1, 1, 10, 100, 1000] : [0.001, 0.01, 0.1, 0.5, 1];
  return h("div", { class: "legend", "aria-label": "colour scale" },
    h("span", {}, mode === "per_million" ? "hangs per million iterations:" : "hit rate:"),
    h("span", { class: "swatch zero" }, "0"),
    stops.map((v) => h("span", { class: "swatch", style: `background:${rateColour(v, mode).background}`,
      dataset: { dark: rateColour(v, mode).dark } },
    mode === "per_million" ? fmt.perMillion(v) : fmt.pct(v, 1))),
    h("span", { class: "swatch grey" }, "too few runs"),
    h("span", { class: "swatch wide" }, "wide interval"),
    h("span", { class: "muted" },
      "Grey: no hang in too few runs to say anything. Dashed: a 95% interval wider than half the scale. "
      + "Each cell reads: rate, k/n (hangs/counted runs), 95% interval."));
}

/** A bar for the rate with a whisker for its interval (0 to 100%). */
export function bar(cell) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bar");
  svg.setAttribute("viewBox", "0 0 120 14");
  svg.setAttribute("aria-hidden", "true");
  const x = (v) => 100 * (v || 0);
  const rect = document.createElementNS(ns, "rect");
  rect.setAttribute("x", 0); rect.setAttribute("y", 3); rect.setAttribute("height", 8);
  rect.setAttribute("width", Math.max(0, x(cell.hit_rate)));
  rect.setAttribute("class", "fill");
  const whisker = document.createElementNS(ns, "line");
  whisker.setAttribute("x1", x(cell.ci95_low)); whisker.setAttribute("x2", x(cell.ci95_high));
  whisker.setAttribute("y1", 7); whisker.setAttribute("y2", 7);
  whisker.setAttribute("class", "whisker");
  svg.append(rect, whisker);
  return svg;
}

export function progress(done, total) {
  const pctDone = total ? (100 * done) / total : 0;
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0,
    "aria-valuemax": total, "aria-valuenow": done, "aria-label": `${done} of ${total} runs finished`,
    title: `${done} of ${total} runs finished` },
  h("div", { style: `width:${pctDone}%` }));
}

/** Labelled selects and inputs; onChange(name, value). */
export function filterBar(fields, values, onChange) {
  return h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, fields.map((f) => {
    const id = "f-" + f.name;
    const control = f.options
      ? h("select", { id, name: f.name, onchange: (e) => onChange(f.name, e.target.value) },
        f.options.map(([value, text]) => h("option", { value, selected: String(values[f.name] ?? "") === String(value) }, text)))
      : h("input", { id, name: f.name, type: "search", value: values[f.name] || "", placeholder: f.placeholder || "",
        onchange: (e) => onChange(f.name, e.target.value.trim()) });
    return h("span", { class: "field" }, h("label", { for: id }, f.label), control);
  }));
}

export function pager({ total, limit, offset, onPage, what }) {
  const last = Math.max(0, Math.ceil(total / limit) - 1);
  const page = Math.floor(offset / limit);
  return h("nav", { class: "pager", "aria-label": `${what || "rows"} pages` },
    h("button", { type: "button", disabled: page <= 0, onclick: () => onPage(Math.max(0, offset - limit)) }, "‹ previous"),
    h("span", {}, total ? `${offset + 1}–${Math.min(total, offset + limit)} of ${fmt.count(total)} ${what || ""}` : `0 ${what || ""}`),
    h("button", { type: "button", disabled: page >= last, onclick: () => onPage(offset + limit) }, "next ›"));
}

export function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** A cancel button that asks before it acts: `label` opens the question, "Yes, cancel it"
 * (#cancel-confirm) calls onConfirm(); an error it throws is shown beside the buttons.
 * `confirming(box)` tells a live refresh not to redraw a question being asked. */
export function cancelButton({ id, label, question, onConfirm }) {
  const box = h("span", { class: "cancel" });
  const ask = h("span", { class: "confirm", hidden: true },
    question + " ",
    h("button", { type: "button", id: "cancel-confirm", class: "danger", onclick: async () => {
      ask.hidden = true; // answered: a refresh after it redraws the buttons
      try { await onConfirm(); } catch (err) { box.append(errorBox(err)); }
    } }, "Yes, cancel it"),
    h("button", { type: "button", onclick: () => { ask.hidden = true; } }, "No"));
  box.append(
    h("button", { type: "button", id, class: "danger", onclick: () => {
      ask.hidden = false;
      ask.querySelector("button").focus();
    } }, label),
    ask);
  return box;
}

export function confirming(box) { return Boolean(box.querySelector(".confirm:not([hidden])")); }
