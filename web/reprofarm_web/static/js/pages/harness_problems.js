// The overview's banner on GET /api/v1/harness-problems: what the farm flags instead
// of counting (docs/operations.md, "Standing controls"). A hang of a bug scenario on
// a negative-control pool is the harness's fault; an unhealthy agent's runs say
// nothing. Shown only when there is something, with links to the runs and agents.

import * as fmt from "../format.js";
import { h, link } from "../components.js";
import { href } from "../router.js";

export function harnessBanner(problems) {
  const hangs = problems.negative_control_hangs;
  const unhealthy = problems.unhealthy_agents;
  if (!hangs && !unhealthy.length) { return null; }
  const parts = [];
  if (hangs) { parts.push(`${fmt.plural(hangs, "hang", "hangs")} on negative controls (not counted)`); }
  if (unhealthy.length) {
    parts.push(unhealthy.length === 1
      ? "1 unhealthy agent (its runs are not counted)"
      : `${fmt.count(unhealthy.length)} unhealthy agents (their runs are not counted)`);
  }
  const runs = problems.recent_hangs.map((r) => h("li", { dataset: { run: r.run_id } },
    link(href(`/runs/${r.run_id}`), `run #${r.run_id}`),
    ` ${r.scenario} hung on ${r.agent || "an agent gone since"}`,
    r.label ? ` (${r.label})` : "",
    ` · job ${r.job_id} · ${fmt.time(r.finished_at)}`));
  const agents = unhealthy.map((a) => h("li", { dataset: { agent: a.name } },
    link(href("/agents", { agent: a.id }), a.name),
    ` unhealthy since ${fmt.time(a.since)}: `, h("span", { class: "detail" }, a.detail)));
  return h("div", { id: "harness-problems", class: "warning harness", role: "note" },
    h("p", { class: "summary" }, h("strong", {}, "Harness problems: "), parts.join(" · "),
      " ", link(href("/agents", { health: "unhealthy" }), "agents →")),
    runs.length ? h("ul", { class: "hangs" }, runs) : null,
    hangs > runs.length ? h("p", { class: "muted" }, `the latest ${runs.length} of ${hangs} shown`) : null,
    agents.length ? h("ul", { class: "unhealthy" }, agents) : null);
}
