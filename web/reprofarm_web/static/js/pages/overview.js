// Overview: the hardware x configuration map, the Go-version comparison and the
// latest jobs. Filters live in the URL (#/?columns=cpus&scenario=...).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, rateCell, legend, bar, pager, filterBar, errorBox } from "../components.js";
import { exportLinks } from "../export.js";
import { apiFilters, fields } from "../filters.js";
import { replaceQuery, href } from "../router.js";
import { vocabulary } from "../vocabulary.js";
import { jobRow } from "./jobs.js";
import { harnessBanner } from "./harness_problems.js";
import { whatMatters } from "./what_matters.js";

export const name = "overview";

const COLUMN_CHOICES = [
  ["cpus", "CPU count"],
  ["affinity", "affinity"],
  ["go_version", "Go version"],
  ["scenario", "scenario"],
  ["cpus,affinity", "CPU count × affinity"],
  ["go_version,cpus", "Go version × CPU count"],
  ["scenario,go_version", "scenario × Go version"],
  ["scenario,cpus", "scenario × CPU count"],
];
const AXIS_NAMES = { cpus: "CPU count", affinity: "affinity", go_version: "Go version", scenario: "scenario" };
const PAGE = 50;

function hardwareCell(hw) {
  const vm = hw.hypervisor === "none" ? "bare metal" : `VM: ${hw.hypervisor}`;
  return h("th", { scope: "row", class: "hw" },
    link(href(`/hardware/${hw.fingerprint}`), hw.label),
    h("span", { class: "details" },
      `${hw.cpu_model} · ${hw.arch} · ${hw.logical_cpus} logical / ${hw.physical_cores} physical cores · ${vm} · ${hw.os} ${hw.os_version}`));
}

function columnLabel(columns, values) {
  return values.map((v, i) => fmt.keyValue(columns[i], v)).join(" · ");
}

function mapTable(data, mode) {
  const head = h("tr", {},
    h("th", { scope: "col" }, "Hardware configuration"),
    h("th", { scope: "col" }, "All runs"),
    data.column_values.map((values) => h("th", { scope: "col", class: "num" }, columnLabel(data.columns, values))));
  const rows = data.rows.map((row) => h("tr", { dataset: { hardware: row.hardware.fingerprint } },
    hardwareCell(row.hardware),
    (() => {
      const td = rateCell(row.total, mode, "total");
      td.append(bar(row.total));
      return td;
    })(),
    row.cells.map((cell, i) => {
      const td = rateCell(cell, mode);
      td.dataset.col = data.column_values[i].map((v) => (v === null ? "all" : v)).join("|");
      return td;
    })));
  const empty = h("tr", {}, h("td", { colspan: 2 + data.column_values.length, class: "empty" },
    "No counted run matches these filters yet."));
  return h("table", { id: "rates", class: "map" },
    h("caption", {}, `Hit rate per hardware configuration by ${data.columns.map((c) => AXIS_NAMES[c]).join(" and ")}; `
      + "each cell: rate, k/n (hangs/counted runs) and the Wilson 95% interval. Errors and lost runs are not counted."),
    h("thead", {}, head), h("tbody", {}, rows.length ? rows : empty));
}

function comparisonTable(data) {
  if (!data.comparisons.length) {
    return h("p", { class: "muted" }, "No two Go versions of a scenario have counted runs under these filters.");
  }
  const sorted = [...data.comparisons].sort((a, b) => a.q_value - b.q_value);
  const side = (keys, hits) => {
    const cell = data.groups.find((g) => g.keys.scenario === keys.scenario && g.keys.go_version === keys.go_version);
    return `Go ${keys.go_version}: ${fmt.kOfN(hits[0], hits[1])} (${fmt.pct(cell && cell.hit_rate)}, 95% ${fmt.interval(cell && cell.ci95_low, cell && cell.ci95_high)})`;
  };
  return table({
    id: "go-comparison",
    caption: "Fisher's exact test between every two Go versions of a scenario; q: Benjamini-Hochberg over all of them.",
    columns: [
      { key: "scenario", label: "Scenario", render: (c) => c.a.scenario },
      { key: "a", label: "A", render: (c) => side(c.a, c.a_hits) },
      { key: "b", label: "B", render: (c) => side(c.b, c.b_hits) },
      { key: "p", label: "p", numeric: true, render: (c) => c.p_value.toPrecision(3) },
      { key: "q", label: "q", numeric: true, render: (c) => c.q_value.toPrecision(3) },
      { key: "verdict", label: "Reading", render: (c) => (c.q_value < 0.05
        ? h("strong", {}, "the rates differ (q < 0.05)") : "no evidence of a difference") },
    ],
    rows: sorted,
  });
}

export async function mount(root, { query }) {
  const state = {
    columns: query.columns || "cpus",
    mode: query.mode || "per_run",
    sort: query.sort || "hangs",
    search: query.search || "",
    offset: Number(query.offset || 0),
    scenario: query.scenario || "",
    go_version: query.go_version || "",
    job_id: query.job_id || "",
    range: query.range || "",
    label: query.label || "",
    signature: query.signature || "",
  };
  document.title = "Overview · reprofarm";
  const words = await vocabulary();
  const controls = h("div");
  const mapBox = h("div", { class: "scroll" });
  const pagerBox = h("div");
  const comparisonBox = h("div");
  const mattersBox = h("div");
  const jobsBox = h("div");
  const problemsBox = h("div");
  root.append(
    problemsBox,
    section("Hit rates by hardware configuration",
      h("p", { class: "hint" }, "Rows: hardware configurations with runs under the filters. Colour shows the rate; the numbers beside it are the evidence."),
      controls, legend(state.mode), mapBox, pagerBox,
      exportLinks(() => apiFilters(state), "the counted runs under these filters")),
    section("Go versions compared", comparisonBox),
    section("What matters", mattersBox),
    section("Latest jobs", jobsBox, h("p", {}, link("#/jobs", "All jobs →"))));

  let goVersions = [];
  const drawControls = () => {
    const change = (key, value) => {
      state[key] = value;
      if (key !== "offset") { state.offset = 0; }
      replaceQuery({ ...state, offset: state.offset || "" });
      if (key === "mode") { root.querySelector(".legend").replaceWith(legend(state.mode)); }
      refresh();
    };
    controls.replaceChildren(filterBar([
      { name: "columns", label: "Columns", options: COLUMN_CHOICES },
      ...fields(words, state.go_version && !goVersions.includes(state.go_version)
        ? [...goVersions, state.go_version] : goVersions),
      { name: "mode", label: "Rate", options: [["per_run", "per run"], ["per_million", "per million iterations"]] },
      { name: "sort", label: "Rows by", options: [["hangs", "most hangs"], ["hit_rate", "highest rate"], ["runs", "most runs"], ["hardware", "name"]] },
      { name: "search", label: "Hardware", placeholder: "search CPU, OS build…" },
    ], state, change));
    return change;
  };
  let change = drawControls();

  async function refresh() {
    const filters = apiFilters(state);
    const [map, comparison, jobs, matters, problems] = await Promise.allSettled([
      api.get("/api/v1/views/overview", { ...filters, columns: state.columns, sort: state.sort,
        search: state.search, limit: PAGE, offset: state.offset }),
      api.get("/api/v1/views/go-comparison", filters),
      api.get("/api/v1/views/jobs", { limit: 5 }),
      api.get("/api/v1/explain", filters),
      api.get("/api/v1/harness-problems", { scenario: state.scenario, job_id: state.job_id }),
    ]);
    if (problems.status === "fulfilled") {
      const banner = harnessBanner(problems.value);
      problemsBox.replaceChildren(...(banner ? [banner] : []));
    } else { problemsBox.replaceChildren(errorBox(problems.reason)); }
    if (map.status === "fulfilled") {
      mapBox.replaceChildren(mapTable(map.value, state.mode));
      pagerBox.replaceChildren(pager({ total: map.value.total_rows, limit: PAGE, offset: state.offset,
        what: "hardware configurations", onPage: (offset) => change("offset", offset) }));
    } else { mapBox.replaceChildren(errorBox(map.reason)); }
    if (comparison.status === "fulfilled") {
      const seen = [...new Set(comparison.value.groups.map((g) => g.keys.go_version))].sort();
      if (seen.join() !== goVersions.join() && !state.go_version) {
        goVersions = seen;
        change = drawControls();
      }
      comparisonBox.replaceChildren(comparisonTable(comparison.value));
    } else { comparisonBox.replaceChildren(errorBox(comparison.reason)); }
    if (matters.status === "fulfilled") {
      mattersBox.replaceChildren(whatMatters(matters.value));
    } else { mattersBox.replaceChildren(errorBox(matters.reason)); }
    if (jobs.status === "fulfilled") {
      jobsBox.replaceChildren(table({ id: "jobs", columns: jobRow(), rows: jobs.value.jobs, empty: "No job yet." }));
    } else { jobsBox.replaceChildren(errorBox(jobs.reason)); }
  }
  await refresh();
  return { parts: ["runs", "jobs", "analyses"], refresh };
}
