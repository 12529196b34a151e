// Submit: a job form for the submitter role, with a dry-run preview of the
// expansion (cells, skipped cells and why) before anything is stored.

import * as api from "../api.js";
import { h, section, table, errorBox, dl } from "../components.js";
import { href } from "../router.js";
import { vocabulary } from "../vocabulary.js";

export const name = "submit";

const list = (s) => String(s || "").split(",").map((x) => x.trim()).filter(Boolean);
const num = (s) => (String(s).trim() === "" ? undefined : Number(s));

/** The JobCreate body from the form's fields (empty fields: the api's defaults);
 * what the form does not show (a selector) comes from ``base``, the spec run again. */
export function spec(form, base = {}) {
  const v = (name) => form.elements[name].value;
  const body = {
    scenario: v("scenario"),
    go_versions: list(v("go_versions")),
    pools: list(v("pools")),
    agents: list(v("agents")),
    fan_out: v("fan_out"),
    cpus: list(v("cpus")).map((c) => (c === "all" ? "all" : Number(c))),
    affinities: list(v("affinities")),
    repeats: num(v("repeats")),
    duration_s: num(v("duration_s")),
    iterations: num(v("iterations")),
    workers: num(v("workers")),
    stall_timeout_s: num(v("stall_timeout_s")),
    control_chance: num(v("control_chance")),
    process_dumps: num(v("process_dumps")),
    priority: num(v("priority")),
    wait_for_agents_s: num(v("wait_for_agents_s")),
    selector: base.selector,
  };
  for (const [k, value] of Object.entries(body)) {
    const empty = Array.isArray(value) ? !value.length : value && typeof value === "object" && !Object.keys(value).length;
    if (value === undefined || empty) { delete body[k]; }
  }
  return body;
}

function field(name, label, control, hint) {
  control.id = "s-" + name;
  control.name = name;
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    hint ? h("span", { class: "muted" }, hint) : null);
}

function preview(result) {
  return h("div", { id: "preview" },
    h("h3", {}, "Dry run: nothing is stored"),
    dl([
      ["Runs", result.runs],
      ["Build targets", result.targets.join(", ") || "–"],
      ["Eligible agents", result.eligible_agents.map((a) => `${a.name} (${a.target}, ${a.logical_cpus} CPUs)`).join(", ") || "none online"],
      ["Skipped cells", result.skipped.length],
    ]),
    result.skipped.length ? table({
      id: "preview-skipped",
      caption: "Cells that will not run, and why",
      columns: [{ key: "target", label: "Target" }, { key: "go_version", label: "Go" }, { key: "cpus", label: "CPUs" }, { key: "reason", label: "Why" }],
      rows: result.skipped,
    }) : null,
    table({
      id: "preview-cells",
      caption: result.cells.length < result.runs ? `The first ${result.cells.length} of ${result.runs} runs` : "Runs",
      columns: [
        { key: "target", label: "Target" }, { key: "go_version", label: "Go" },
        { key: "cpus", label: "CPUs", render: (c) => (c.cpus === null ? "all" : c.cpus) },
        { key: "affinity", label: "Affinity" }, { key: "repeat_index", label: "Repeat", numeric: true },
      ],
      rows: result.cells.slice(0, 200),
    }));
}

export async function mount(root, { query, me }) {
  document.title = "Submit · reprofarm";
  if (!me.can_submit) {
    root.append(section("Submit a job", h("p", { id: "not-allowed" },
      `This token (${me.name}, role ${me.role}) may not submit jobs; a submitter or admin token may.`)));
    return null;
  }
  const words = await vocabulary();
  let from = {};
  if (query.from) {
    try { from = (await api.get(`/api/v1/jobs/${query.from}`)).spec; } catch (err) { root.append(errorBox(err)); }
  }
  const val = (k, d) => (from[k] === undefined || from[k] === null ? d : Array.isArray(from[k]) ? from[k].join(",") : String(from[k]));
  const input = (k, d, attrs) => h("input", { value: val(k, d), ...attrs });
  const select = (k, options, d) => h("select", {}, options.map((o) => h("option", { value: o, selected: val(k, d) === o }, o)));
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { id: "submit-form", novalidate: true },
    h("fieldset", {}, h("legend", {}, "What to run"),
      field("scenario", "Scenario", select("scenario", words.scenarios, "pipe-close-race")),
      field("go_versions", "Go versions", input("go_versions", "1.27.3"), "comma-separated, e.g. 1.26.4,1.27.3"),
      field("duration_s", "Duration (s)", input("duration_s", "", { type: "number", min: "0", step: "any" }), "or iterations"),
      field("iterations", "Iterations per worker", input("iterations", "", { type: "number", min: "1" })),
      field("workers", "Workers", input("workers", "10", { type: "number", min: "1" })),
      field("stall_timeout_s", "Stall timeout (s)", input("stall_timeout_s", "30", { type: "number", min: "0", step: "any" })),
      field("control_chance", "Control chance", input("control_chance", "", { type: "number", min: "0", max: "1", step: "any" }), "control-deadlock only"),
      field("process_dumps", "Process dumps per hang", input("process_dumps", "2", { type: "number", min: "0", max: "5" }))),
    h("fieldset", {}, h("legend", {}, "Where and how often"),
      field("cpus", "CPU counts", input("cpus", "all"), "comma-separated numbers or all"),
      field("affinities", "Affinities", input("affinities", "compact"), "compact, spread, pcores, ecores, all or mask:0x…"),
      field("repeats", "Repeats per cell", input("repeats", "1", { type: "number", min: "1" })),
      field("pools", "Pools", input("pools", ""), "comma-separated; empty: any agent"),
      field("agents", "Agents", input("agents", ""), "comma-separated names"),
      field("fan_out", "Fan-out", select("fan_out", words.fanOuts, "any-agent")),
      field("priority", "Priority", input("priority", "0", { type: "number", min: "-100", max: "100" })),
      field("wait_for_agents_s", "Wait for agents (s)", input("wait_for_agents_s", "", { type: "number", min: "0", step: "any" }),
        "store the job even if no matching agent is online; runs not started by then expire")),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "dry-run", onclick: async () => {
        out.replaceChildren(h("p", {}, "expanding…"));
        try { out.replaceChildren(preview(await api.post("/api/v1/jobs", spec(form, from), { dry_run: "true" }))); }
        catch (err) { out.replaceChildren(errorBox(err)); }
      } }, "Preview (dry run)"),
      h("button", { type: "submit", id: "submit-job", class: "primary" }, "Submit job")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const job = await api.post("/api/v1/jobs", spec(form, from));
      location.hash = href(`/jobs/${job.id}`);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  });
  root.append(section(query.from ? `Run job #${query.from} again` : "Submit a job", form, out));
  return null;
}
