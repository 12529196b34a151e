// The agents page's pools section on GET /api/v1/pools: each pool's standing controls
// in words (docs/operations.md, "Standing controls"). An admin sets them with
// PUT /api/v1/pools/{name}.

import * as fmt from "../format.js";
import { h, link, table } from "../components.js";
import { href } from "../router.js";

/** "negative control · canary at start · positive control every 1 d at chance 0.001". */
export function controlsInWords(pool) {
  const words = [];
  if (pool.negative_control) { words.push("negative control"); }
  if (pool.canary_at_start) { words.push("canary at start"); }
  if (pool.positive_control_every_s !== null) {
    words.push(`positive control every ${fmt.period(pool.positive_control_every_s)} `
      + `at chance ${pool.positive_control_chance}`);
  }
  return words.length ? words.join(" · ") : "no standing controls";
}

export function poolsTable(pools) {
  return table({
    id: "pools",
    caption: "A hang of a bug scenario on a negative control is a harness problem, never counted. "
      + "Checks run the control scenario on each agent; an agent whose check fails is unhealthy "
      + "and its runs are not counted until one passes.",
    columns: [
      { key: "name", label: "Pool", render: (p) => link(href("/agents", { search: p.name }), p.name) },
      { key: "agents", label: "Agents", numeric: true, render: (p) => fmt.count(p.agents) },
      { key: "controls", label: "Controls", render: (p) => h("span", { class: "controls" }, controlsInWords(p)) },
      { key: "checks", label: "Checks run", render: (p) => {
        if (p.positive_control_every_s !== null) { return `Go ${p.go_version}, ${fmt.duration(p.positive_control_duration_s)} each`; }
        return p.canary_at_start ? `Go ${p.go_version}` : "–";
      } },
      { key: "updated", label: "Set", render: (p) => (p.updated_at ? `${fmt.time(p.updated_at)} by ${p.updated_by || "?"}` : "–") },
    ],
    rows: pools,
    rowAttrs: (p) => ({ dataset: { pool: p.name } }),
    empty: "No pool has standing controls (an admin sets them: PUT /api/v1/pools/{name}).",
  });
}
