// Agents: online, offline, needing a reboot, busy with which run, hardware,
// pools, last seen, version.

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, pager, filterBar, errorBox, badge } from "../components.js";
import { replaceQuery, href } from "../router.js";

export const name = "agents";
const PAGE = 50;

function health(a) {
  if (a.needs_reboot) { return "needs reboot"; }
  if (!a.online) { return "offline"; }
  return a.current_run_id ? "busy" : "idle";
}

export function agentColumns() {
  return [
    { key: "name", label: "Agent", render: (a) => h("strong", {}, a.name) },
    { key: "health", label: "State", render: (a) => badge(health(a)) },
    { key: "run", label: "Busy with", render: (a) => (a.current_run_id ? link(href(`/runs/${a.current_run_id}`), `run #${a.current_run_id}`) : "–") },
    { key: "hardware", label: "Hardware", render: (a) => (a.hardware_fingerprint
      ? link(href(`/hardware/${a.hardware_fingerprint}`), `${a.facts.cpu_model || "?"} (${a.facts.arch || "?"}, ${a.logical_cpus} CPUs${a.facts.hypervisor && a.facts.hypervisor !== "none" ? `, ${a.facts.hypervisor}` : ""}, ${a.facts.os_version || ""})`)
      : "–") },
    { key: "pools", label: "Pools", render: (a) => a.pools.join(", ") || "–" },
    { key: "seen", label: "Last seen", render: (a) => h("time", { datetime: a.last_seen, title: fmt.time(a.last_seen) }, fmt.ago(a.last_seen)) },
    { key: "reboot", label: "Last reboot", render: (a) => (a.last_reboot_at ? `${fmt.time(a.last_reboot_at)} (${a.reboots})` : "–") },
    { key: "version", label: "Version", render: (a) => a.agent_version },
  ];
}

export async function mount(root, { query }) {
  document.title = "Agents · reprofarm";
  const state = { state: query.state || "", search: query.search || "", offset: Number(query.offset || 0) };
  const controls = h("div");
  const summary = h("p", { id: "agent-summary" });
  const box = h("div", { class: "scroll" });
  root.append(section("Agents", controls, summary, box));
  const change = (key, value) => {
    state[key] = value;
    if (key !== "offset") { state.offset = 0; }
    replaceQuery({ ...state, offset: state.offset || "" });
    refresh();
  };
  controls.replaceChildren(filterBar([
    { name: "state", label: "State", options: [["", "any"], ["online", "online"], ["busy", "busy"], ["idle", "idle"], ["offline", "offline"], ["needs reboot", "needs reboot"]] },
    { name: "search", label: "Search", placeholder: "name, pool, CPU…" },
  ], state, change));

  async function refresh() {
    try {
      const agents = await api.get("/api/v1/agents");
      const tally = { online: 0, busy: 0, offline: 0, "needs reboot": 0 };
      for (const a of agents) {
        const s = health(a);
        if (a.online) { tally.online += 1; }
        if (s in tally) { tally[s] += 1; }
      }
      summary.textContent = `${agents.length} agents: ${tally.online} online (${tally.busy} busy), ${tally.offline} offline, ${tally["needs reboot"]} need a reboot.`;
      const needle = state.search.toLowerCase();
      const shown = agents.filter((a) => (!state.state || (state.state === "online" ? a.online : health(a) === state.state))
        && (!needle || [a.name, ...a.pools, a.facts.cpu_model || "", a.target].join(" ").toLowerCase().includes(needle)));
      box.replaceChildren(
        table({ id: "agents", columns: agentColumns(), rows: shown.slice(state.offset, state.offset + PAGE), empty: "No agent matches." }),
        pager({ total: shown.length, limit: PAGE, offset: state.offset, what: "agents", onPage: (o) => change("offset", o) }));
    } catch (err) { box.replaceChildren(errorBox(err)); }
  }
  await refresh();
  return { parts: ["agents"], refresh };
}
