// Jobs: newest first, paged, with live progress; a study links to its own page.

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, pager, filterBar, errorBox, badge, progress } from "../components.js";
import { replaceQuery, href } from "../router.js";
import { vocabulary } from "../vocabulary.js";
import { KIND, isStudy } from "../studies.js";

export const name = "jobs";
const PAGE = 25;

const FINISHED = ["passed", "hung", "failed", "error", "lost", "cancelled", "expired"];

export function finished(runs) { return FINISHED.reduce((n, s) => n + (runs[s] || 0), 0); }

/** The columns of a job row (the jobs page and the overview's latest jobs). */
export function jobRow() {
  return [
    { key: "id", label: "Job", render: (j) => link(href(`/${isStudy(j) ? "studies" : "jobs"}/${j.id}`), `#${j.id}`) },
    { key: "kind", label: "Kind", render: (j) => KIND[j.kind] || j.kind },
    { key: "scenario", label: "Scenario", render: (j) => j.spec.scenario },
    { key: "go", label: "Go", render: (j) => (j.spec.go_versions || []).join(", ") },
    { key: "status", label: "Status", render: (j) => badge(j.status) },
    { key: "progress", label: "Progress", render: (j) => h("span", { class: "with-bar" },
      progress(finished(j.runs), j.total_runs), ` ${finished(j.runs)}/${j.total_runs}`) },
    { key: "hung", label: "Hung", numeric: true, render: (j) => h("span", { class: j.runs.hung ? "hung" : "" }, j.runs.hung) },
    { key: "passed", label: "Passed", numeric: true, render: (j) => j.runs.passed },
    { key: "failed", label: "Failed", numeric: true, render: (j) => j.runs.failed },
    { key: "error", label: "Error", numeric: true, render: (j) => j.runs.error },
    { key: "lost", label: "Lost", numeric: true, render: (j) => j.runs.lost },
    { key: "created", label: "Submitted", render: (j) => h("time", { datetime: j.created_at, title: fmt.time(j.created_at) }, fmt.ago(j.created_at)) },
  ];
}

export async function mount(root, { query }) {
  document.title = "Jobs · reprofarm";
  const state = { status: query.status || "", offset: Number(query.offset || 0) };
  const words = await vocabulary();
  const box = h("div");
  const controls = h("div");
  root.append(section("Jobs", controls, box));
  const change = (key, value) => {
    state[key] = value;
    if (key !== "offset") { state.offset = 0; }
    replaceQuery({ status: state.status, offset: state.offset || "" });
    refresh();
  };
  controls.replaceChildren(filterBar([
    { name: "status", label: "Status", options: [["", "any"], ...words.jobStates.map((s) => [s, s])] },
  ], state, change));

  async function refresh() {
    try {
      const page = await api.get("/api/v1/views/jobs", { status: state.status, limit: PAGE, offset: state.offset });
      box.replaceChildren(
        table({ id: "job-list", columns: jobRow(), rows: page.jobs, empty: "No job matches." }),
        pager({ total: page.total, limit: PAGE, offset: state.offset, what: "jobs", onPage: (o) => change("offset", o) }));
    } catch (err) { box.replaceChildren(errorBox(err)); }
  }
  await refresh();
  return { parts: ["runs", "jobs"], refresh };
}
