// Agents: online, offline, needing a reboot, busy with which run, health (standing
// controls), hardware, pools, last seen, version; the pools' controls in words.
// #/agents?agent=ID adds that agent's latest health checks, and for an admin a
// "Check now" (POST /api/v1/agents/{id}/health-check).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, pager, filterBar, errorBox, badge } from "../components.js";
import { replaceQuery, href } from "../router.js";
import { poolsTable } from "./pools.js";

export const name = "agents";
const PAGE = 50;

function activity(a) {
  if (a.needs_reboot) { return "needs reboot"; }
  if (!a.online) { return "offline"; }
  return a.current_run_id ? "busy" : "idle";
}

/** unknown (never checked), healthy or unhealthy; since when; what its last check saw. */
export function healthCell(a) {
  return h("span", { class: "health", title: a.health_detail || null },
    badge(a.health),
    a.health_changed_at ? h("span", { class: "muted" }, ` since ${fmt.time(a.health_changed_at)}`) : null,
    a.health_detail ? h("span", { class: "detail" }, a.health_detail) : null);
}

export function agentColumns(agentHref) {
  return [
    { key: "name", label: "Agent", render: (a) => h("strong", {}, agentHref ? link(agentHref(a), a.name) : a.name) },
    { key: "state", label: "State", render: (a) => badge(activity(a)) },
    { key: "health", label: "Health", render: healthCell },
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

function checksTable(checks) {
  return table({
    id: "health-checks",
    caption: "A check runs the control scenario on this agent alone: it must hang, and its dumps must be captured and parse.",
    columns: [
      { key: "id", label: "Check", render: (c) => `#${c.id}` },
      { key: "kind", label: "Kind", render: (c) => c.kind },
      { key: "trigger", label: "Started by", render: (c) => c.trigger },
      { key: "job", label: "Job", render: (c) => link(href(`/jobs/${c.job_id}`), `job ${c.job_id}`) },
      { key: "created", label: "Started", render: (c) => fmt.time(c.created_at) },
      { key: "finished", label: "Finished", render: (c) => fmt.time(c.finished_at) },
      { key: "outcome", label: "Outcome", render: (c) => badge(c.outcome || "running") },
      { key: "detail", label: "What was seen", render: (c) => c.detail || "–" },
    ],
    rows: checks,
    rowAttrs: (c) => ({ dataset: { check: c.id, outcome: c.outcome || "running" } }),
    empty: "No health check of this agent yet.",
  });
}

/** An admin's "Check now": the api's answer (or its refusal, 409 while one runs) is
 * said beside the button; onStarted() redraws the checks. */
function checkNow(agentId, onStarted) {
  const kind = h("select", { id: "check-kind", "aria-label": "kind of check" },
    h("option", { value: "positive-control" }, "positive control"),
    h("option", { value: "canary" }, "capture canary"));
  const said = h("span", { id: "check-status", class: "status-line", role: "status" });
  const button = h("button", { type: "button", id: "check-now", onclick: async () => {
    button.disabled = true;
    said.replaceChildren("starting…");
    try {
      const check = await api.post(`/api/v1/agents/${agentId}/health-check`, { kind: kind.value });
      said.replaceChildren(`check #${check.id} started (job ${check.job_id})`);
      await onStarted();
    } catch (err) {
      said.replaceChildren(h("span", { class: "error", role: "alert" }, `not started: ${err.message}`));
    } finally { button.disabled = false; }
  } }, "Check now");
  return h("p", { class: "actions" }, kind, button, said);
}

export async function mount(root, { query, me }) {
  document.title = "Agents · reprofarm";
  const state = { state: query.state || "", health: query.health || "", search: query.search || "",
    offset: Number(query.offset || 0), agent: query.agent || "" };
  const controls = h("div");
  const summary = h("p", { id: "agent-summary" });
  const box = h("div", { class: "scroll" });
  const detailHead = h("div");
  const checksBox = h("div", { class: "scroll" });
  const poolsBox = h("div", { class: "scroll" });
  root.append(section("Agents", controls, summary, box));
  if (state.agent) {
    root.append(h("section", { id: "agent-health", "aria-label": "health checks" }, detailHead,
      me && me.can_admin ? checkNow(state.agent, () => refresh()) : null, checksBox));
  }
  root.append(section("Pools and their standing controls", poolsBox));
  const change = (key, value) => {
    state[key] = value;
    if (key !== "offset") { state.offset = 0; }
    replaceQuery({ ...state, offset: state.offset || "" });
    refresh();
  };
  controls.replaceChildren(filterBar([
    { name: "state", label: "State", options: [["", "any"], ["online", "online"], ["busy", "busy"], ["idle", "idle"], ["offline", "offline"], ["needs reboot", "needs reboot"]] },
    { name: "health", label: "Health", options: [["", "any"], ["healthy", "healthy"], ["unhealthy", "unhealthy"], ["unknown", "unknown"]] },
    { name: "search", label: "Search", placeholder: "name, pool, CPU…" },
  ], state, change));
  const agentHref = (a) => href("/agents", { ...state, offset: state.offset || "", agent: a.id });

  async function refreshDetail(agents) {
    const agent = agents.find((a) => String(a.id) === String(state.agent));
    if (!agent) { detailHead.replaceChildren(h("h2", {}, `No agent #${state.agent}`)); return; }
    detailHead.replaceChildren(h("h2", {}, `Health checks of ${agent.name} `,
      link(href("/agents", { ...state, offset: state.offset || "", agent: "" }), "(close)")), healthCell(agent));
    try {
      checksBox.replaceChildren(checksTable(await api.get(`/api/v1/agents/${agent.id}/health-checks`)));
    } catch (err) { checksBox.replaceChildren(errorBox(err)); }
  }

  async function refresh() {
    const [listed, pools] = await Promise.allSettled([api.get("/api/v1/agents"), api.get("/api/v1/pools")]);
    if (pools.status === "fulfilled") { poolsBox.replaceChildren(poolsTable(pools.value)); } else { poolsBox.replaceChildren(errorBox(pools.reason)); }
    if (listed.status === "rejected") { box.replaceChildren(errorBox(listed.reason)); return; }
    const agents = listed.value;
    const tally = { online: 0, busy: 0, offline: 0, "needs reboot": 0, unhealthy: 0 };
    for (const a of agents) {
      const s = activity(a);
      if (a.online) { tally.online += 1; }
      if (s in tally) { tally[s] += 1; }
      if (a.health === "unhealthy") { tally.unhealthy += 1; }
    }
    summary.textContent = `${agents.length} agents: ${tally.online} online (${tally.busy} busy), ${tally.offline} offline, ${tally["needs reboot"]} need a reboot, ${tally.unhealthy} unhealthy.`;
    const needle = state.search.toLowerCase();
    const shown = agents.filter((a) => (!state.state || (state.state === "online" ? a.online : activity(a) === state.state))
      && (!state.health || a.health === state.health)
      && (!needle || [a.name, ...a.pools, a.facts.cpu_model || "", a.target].join(" ").toLowerCase().includes(needle)));
    box.replaceChildren(
      table({ id: "agents", columns: agentColumns(agentHref), rows: shown.slice(state.offset, state.offset + PAGE),
        rowAttrs: (a) => ({ dataset: { agent: a.name, health: a.health } }), empty: "No agent matches." }),
      pager({ total: shown.length, limit: PAGE, offset: state.offset, what: "agents", onPage: (o) => change("offset", o) }));
    if (state.agent) { await refreshDetail(agents); }
  }
  await refresh();
  // Health changes with a check's run or its dumps' analysis, not in the agents' part.
  return { parts: ["agents", "runs", "analyses"], refresh };
}
