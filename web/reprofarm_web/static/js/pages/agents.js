// Agents: online, offline, needing a reboot, busy with which run, health (standing
// controls), hardware, pools, last seen, version; the pools' controls in words.
// A page at a time from GET /api/v1/agents/page, filtered there (state, health, a
// search), `limit` per page (?limit=, else 50); the summary is the reply's counts over
// every agent. #/agents?agent=ID adds that agent's latest health checks (the agent is
// asked for by its id when it is not on the page), and for an admin a "Check now"
// (POST /api/v1/agents/{id}/health-check).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, pager, filterBar, errorBox, badge } from "../components.js";
import { replaceQuery, href } from "../router.js";
import { poolsTable } from "./pools.js";
import { vocabulary } from "../vocabulary.js";

export const name = "agents";
const PAGE = 50;

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
    { key: "state", label: "State", render: (a) => badge(a.state) },
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

/** The page's filters as `GET /agents/page` takes them: "online" is its own filter
 * (any state), the other choices are states. */
function filters(state, words) {
  const q = { health: state.health, search: state.search };
  if (state.state === "online") { q.online = true; } else if (words.agentStates.includes(state.state)) { q.state = state.state; }
  return q;
}

/** Page size: `limit` in the page's query (1–1000), else PAGE. */
function pageSize(value) {
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : PAGE;
}

export async function mount(root, { query, me }) {
  document.title = "Agents · reprofarm";
  const words = await vocabulary();
  const state = { state: query.state || "", health: query.health || "", search: query.search || "",
    offset: Number(query.offset || 0), agent: query.agent || "" };
  const limit = pageSize(query.limit);
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
  // The page's own query: the filters, the page, its size if not the default, the agent.
  const here = (extra) => ({ ...state, offset: state.offset || "", limit: limit === PAGE ? "" : limit, ...extra });
  const change = (key, value) => {
    state[key] = value;
    if (key !== "offset") { state.offset = 0; }
    replaceQuery(here());
    refresh();
  };
  controls.replaceChildren(filterBar([
    { name: "state", label: "State", options: [["", "any"], ["online", "online"], ...words.agentStates.map((s) => [s, s])] },
    { name: "health", label: "Health", options: [["", "any"], ...words.agentHealth.map((s) => [s, s])] },
    { name: "search", label: "Search", placeholder: "name, pool, CPU…" },
  ], state, change));
  const agentHref = (a) => href("/agents", here({ agent: a.id }));

  /** The agent of ?agent=ID: from the page shown, else asked for by its id. */
  async function refreshDetail(shown) {
    let agent = shown.find((a) => String(a.id) === String(state.agent));
    try {
      if (!agent && /^[0-9]{1,9}$/.test(state.agent)) {
        [agent] = (await api.get("/api/v1/agents/page", { id: state.agent, limit: 1 })).agents;
      }
    } catch (err) { detailHead.replaceChildren(errorBox(err)); return; }
    if (!agent) { detailHead.replaceChildren(h("h2", {}, `No agent #${state.agent}`)); return; }
    detailHead.replaceChildren(h("h2", {}, `Health checks of ${agent.name} `,
      link(href("/agents", here({ agent: "" })), "(close)")), healthCell(agent));
    try {
      checksBox.replaceChildren(checksTable(await api.get(`/api/v1/agents/${agent.id}/health-checks`)));
    } catch (err) { checksBox.replaceChildren(errorBox(err)); }
  }

  async function refresh() {
    const [listed, pools] = await Promise.allSettled([
      api.get("/api/v1/agents/page", { ...filters(state, words), limit, offset: state.offset }),
      api.get("/api/v1/pools")]);
    if (pools.status === "fulfilled") { poolsBox.replaceChildren(poolsTable(pools.value)); } else { poolsBox.replaceChildren(errorBox(pools.reason)); }
    if (listed.status === "rejected") { box.replaceChildren(errorBox(listed.reason)); return; }
    const page = listed.value;
    const c = page.counts; // over every agent, whatever the filters
    const n = fmt.count;
    summary.textContent = `${fmt.plural(c.agents, "agent", "agents")}: ${n(c.online)} online (${n(c.busy)} busy), ${n(c.offline)} offline, ${n(c.needs_reboot)} need a reboot, ${n(c.unhealthy)} unhealthy.`;
    box.replaceChildren(
      table({ id: "agents", columns: agentColumns(agentHref), rows: page.agents,
        rowAttrs: (a) => ({ dataset: { agent: a.name, health: a.health, state: a.state } }), empty: "No agent matches." }),
      pager({ total: page.total, limit, offset: state.offset, what: "agents", onPage: (o) => change("offset", o) }));
    if (state.agent) { await refreshDetail(page.agents); }
  }
  await refresh();
  // Health changes with a check's run or its dumps' analysis, not in the agents' part.
  return { parts: ["agents", "runs", "analyses"], refresh };
}
