// A job: its spec, progress, matrix of cells (runs by state, hit rate), its runs
// (sortable, filterable, paged), cancel and "run again" for a submitter.

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, pager, filterBar, errorBox, badge, progress, dl, rateCell, cancelButton, confirming } from "../components.js";
import { exportLinks } from "../export.js";
import { replaceQuery, href } from "../router.js";
import { vocabulary } from "../vocabulary.js";
import { finished } from "./jobs.js";
import { KIND, isStudy } from "../studies.js";

export const name = "job";
const PAGE = 50;
const OPEN = ["queued", "running"];

function specFacts(job) {
  const s = job.spec;
  return dl([
    ["Status", badge(job.status)],
    isStudy(job) ? ["Study", link(href(`/studies/${job.id}`), `${KIND[job.kind]}: its decision so far`)] : null,
    ["Scenario", s.scenario],
    ["Go versions", (s.go_versions || []).join(", ")],
    ["CPUs", (s.cpus || []).join(", ")],
    ["Affinities", (s.affinities || []).join(", ")],
    ["Repeats", s.repeats],
    ["Length", s.duration_s ? fmt.duration(s.duration_s) : `${fmt.count(s.iterations)} iterations per worker`],
    ["Stall timeout", fmt.duration(s.stall_timeout_s)],
    ["Pools / agents", [...(s.pools || []), ...(s.agents || [])].join(", ") || "any agent"],
    s.wait_for_agents_s ? ["Waits for agents", fmt.duration(s.wait_for_agents_s)] : null,
    ["Submitted", fmt.time(job.created_at)],
    ["Finished", fmt.time(job.finished_at)],
    ["Progress", h("span", { class: "with-bar" }, progress(finished(job.runs), job.total_runs),
      ` ${finished(job.runs)} of ${job.total_runs} runs finished`)],
    ["Runs by state", Object.entries(job.runs).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(" · ") || "none"],
  ]);
}

function cellsTable(cells) {
  const states = ["pending", "ready", "leased", "passed", "hung", "failed", "error", "lost", "cancelled", "expired"]
    .filter((s) => cells.some((c) => c.by_status[s]));
  return table({
    id: "cells",
    caption: "Each cell of the job's matrix: its runs by state and its hit rate (rate, k/n, 95% interval).",
    columns: [
      { key: "target", label: "Target", render: (c) => c.target },
      { key: "go", label: "Go", render: (c) => c.go_version },
      { key: "cpus", label: "CPUs", render: (c) => fmt.cpus(c.cpus) },
      { key: "affinity", label: "Affinity", render: (c) => c.affinity },
      ...states.map((s) => ({ key: s, label: s, numeric: true,
        render: (c) => h("span", { class: s === "hung" && c.by_status[s] ? "hung" : "" }, c.by_status[s] || 0) })),
      { key: "status", label: "Cell", render: (c) => badge(cellStatus(c)) },
      { key: "rate", label: "Hit rate", render: (c) => rateCell(c.rate, "per_run") },
    ],
    rows: cells,
    rowAttrs: (c) => ({ dataset: { cpus: c.cpus === null ? "all" : c.cpus, affinity: c.affinity, go: c.go_version } }),
    empty: "This job has no runs.",
  });
}

function cellStatus(c) {
  const open = ["pending", "ready", "leased"].reduce((n, s) => n + (c.by_status[s] || 0), 0);
  if (c.by_status.leased) { return "running"; }
  if (open) { return "waiting"; }
  return c.by_status.hung ? "hung" : "done";
}

function runColumns() {
  return [
    { key: "id", label: "Run", sortable: true, render: (r) => link(href(`/runs/${r.id}`), `#${r.id}`) },
    { key: "status", label: "Status", sortable: true, render: (r) => badge(r.status) },
    { key: "go_version", label: "Go", sortable: true },
    { key: "cpus", label: "CPUs", sortable: true, render: (r) => fmt.cpus(r.cpus) },
    { key: "affinity", label: "Affinity", sortable: true },
    { key: "agent", label: "Agent", sortable: true, render: (r) => r.agent || "–" },
    { key: "iterations", label: "Iterations", sortable: true, numeric: true, render: (r) => fmt.count(r.iterations) },
    { key: "duration_s", label: "Duration", sortable: true, numeric: true, render: (r) => fmt.duration(r.duration_s) },
    { key: "label", label: "Label", sortable: true, render: (r) => (r.label ? h("span", {}, r.label, r.confidence ? h("span", { class: "muted" }, ` (${r.confidence})`) : null) : r.status === "hung" ? "pending" : "–") },
    { key: "finished_at", label: "Finished", sortable: true, render: (r) => fmt.time(r.finished_at) },
    { key: "reason", label: "Reason", render: (r) => h("span", { class: "reason" }, r.reason) },
  ];
}

export async function mount(root, { params, query, me }) {
  const jobId = params.id;
  document.title = `Job ${jobId} · reprofarm`;
  const state = { status: query.status || "", sort: query.sort || "id", desc: query.desc === "1", offset: Number(query.offset || 0) };
  const words = await vocabulary();
  const heading = h("h2", {}, `Job #${jobId}`);
  const actions = h("div", { class: "actions" });
  const facts = h("div");
  const cellsBox = h("div", { class: "scroll" });
  const skippedBox = h("div");
  const runsControls = h("div");
  const runsBox = h("div", { class: "scroll" });
  root.append(
    h("section", { "aria-label": "job" }, heading, actions, facts, skippedBox,
      exportLinks(() => ({ job_id: jobId }), "this job's counted runs")),
    section("Matrix", cellsBox),
    section("Runs", runsControls, runsBox));

  const setRuns = (key, value) => {
    if (key === "sort") {
      state.desc = state.sort === value ? !state.desc : false;
      state.sort = value;
    } else { state[key] = value; }
    if (key !== "offset") { state.offset = 0; }
    replaceQuery({ status: state.status, sort: state.sort, desc: state.desc ? "1" : "", offset: state.offset || "" });
    refreshRuns();
  };
  runsControls.replaceChildren(filterBar([
    { name: "status", label: "Status", options: [["", "any"], ...words.runStates.map((s) => [s, s])] },
  ], state, setRuns));

  function drawActions(job) {
    actions.replaceChildren();
    if (!me.can_submit) { return; }
    if (!isStudy(job)) {
      actions.append(link(href("/submit", { from: job.id }), "Run again with the same spec", { class: "button" }));
    }
    if (!OPEN.includes(job.status)) { return; }
    actions.append(cancelButton({
      id: "cancel-job",
      label: "Cancel job",
      question: "Cancel this job? Runs not started are cancelled, running ones stop at their next heartbeat.",
      onConfirm: async () => {
        await api.post(`/api/v1/jobs/${job.id}/cancel`);
        await refresh();
      },
    }));
  }

  async function refreshRuns() {
    try {
      const page = await api.get(`/api/v1/views/jobs/${jobId}/runs`, {
        status: state.status, sort: state.sort, desc: state.desc ? "true" : "", limit: PAGE, offset: state.offset });
      runsBox.replaceChildren(
        table({ id: "runs", columns: runColumns(), rows: page.runs, sort: { key: state.sort, desc: state.desc },
          onSort: (key) => setRuns("sort", key), empty: "No run matches." }),
        pager({ total: page.total, limit: PAGE, offset: state.offset, what: "runs", onPage: (o) => setRuns("offset", o) }));
    } catch (err) { runsBox.replaceChildren(errorBox(err)); }
  }

  async function refresh() {
    try {
      const view = await api.get(`/api/v1/views/jobs/${jobId}`);
      heading.replaceChildren(`Job #${jobId} `, badge(view.job.status));
      facts.replaceChildren(specFacts(view.job));
      skippedBox.replaceChildren(...(view.job.skipped.length
        ? [h("h3", {}, "Skipped cells"), h("ul", { id: "skipped" },
          view.job.skipped.map((s) => h("li", {}, `${s.target}, Go ${s.go_version}, ${s.cpus} CPUs: ${s.reason}`)))]
        : []));
      cellsBox.replaceChildren(cellsTable(view.cells));
      if (!confirming(actions)) { drawActions(view.job); }
    } catch (err) { facts.replaceChildren(errorBox(err)); }
    await refreshRuns();
  }
  await refresh();
  return { parts: ["runs", "jobs", "analyses"], refresh };
}
