// One hardware configuration: what it is, its agents, its rates by scenario, Go
// version, CPU count and affinity, and its Go-version comparison.

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, errorBox, badge, dl, rateCell } from "../components.js";
import { href } from "../router.js";

export const name = "hardware";

export async function mount(root, { params }) {
  const fingerprint = params.fingerprint;
  document.title = "Hardware · reprofarm";
  const box = h("div");
  root.append(box);

  async function refresh() {
    try {
      const [view, comparison] = await Promise.all([
        api.get(`/api/v1/views/hardware/${fingerprint}`),
        api.get("/api/v1/views/go-comparison", { hardware: fingerprint }),
      ]);
      const hw = view.hardware;
      box.replaceChildren(
        h("section", { "aria-label": "hardware" }, h("h2", {}, hw.label), dl([
          ["CPU model", hw.cpu_model], ["Architecture", hw.arch],
          ["Cores", `${hw.logical_cpus} logical, ${hw.physical_cores} physical`],
          ["Hypervisor", hw.hypervisor], ["OS build", `${hw.os} ${hw.os_version}`],
          ["Fingerprint", h("code", {}, hw.fingerprint)], ["First seen", fmt.time(hw.first_seen)],
          ["Rates on the map", link(href("/", { search: hw.cpu_model }), "overview rows like this one")],
        ])),
        section("Agents", table({
          id: "hardware-agents",
          columns: [
            { key: "name", label: "Agent", render: (a) => link(href("/agents", { search: a.name }), a.name) },
            { key: "state", label: "State", render: (a) => badge(a.needs_reboot ? "needs reboot" : !a.online ? "offline" : a.current_run_id ? "busy" : "idle") },
            { key: "run", label: "Busy with", render: (a) => (a.current_run_id ? link(href(`/runs/${a.current_run_id}`), `run #${a.current_run_id}`) : "–") },
            { key: "pools", label: "Pools", render: (a) => a.pools.join(", ") || "–" },
            { key: "seen", label: "Last seen", render: (a) => fmt.ago(a.last_seen) },
            { key: "version", label: "Version", render: (a) => a.agent_version },
          ],
          rows: view.agents,
          empty: "No agent has this hardware now (its runs came from agents since changed).",
        })),
        section("Hit rates", h("div", { class: "scroll" }, table({
          id: "hardware-rates",
          caption: "Each row: rate, k/n (hangs/counted runs) and the Wilson 95% interval.",
          columns: [
            { key: "scenario", label: "Scenario", render: (c) => c.keys.scenario },
            { key: "go", label: "Go", render: (c) => c.keys.go_version },
            { key: "cpus", label: "CPUs", render: (c) => fmt.cpus(c.keys.cpus) },
            { key: "affinity", label: "Affinity", render: (c) => c.keys.affinity },
            { key: "rate", label: "Hit rate", render: (c) => rateCell(c, "per_run") },
            { key: "pm", label: "Hangs / million iterations", numeric: true, render: (c) => fmt.perMillion(c.hangs_per_million_iterations) },
            { key: "r95", label: "Runs for a 95% chance of a hang", numeric: true, render: (c) => c.runs_for_95pct ?? "–" },
          ],
          rows: view.rates,
          empty: "No counted run on this hardware yet.",
        }))),
        section("Go versions compared on this hardware", table({
          id: "hardware-comparison",
          columns: [
            { key: "scenario", label: "Scenario", render: (c) => c.a.scenario },
            { key: "a", label: "A", render: (c) => `Go ${c.a.go_version}: ${fmt.kOfN(...c.a_hits)}` },
            { key: "b", label: "B", render: (c) => `Go ${c.b.go_version}: ${fmt.kOfN(...c.b_hits)}` },
            { key: "p", label: "p", numeric: true, render: (c) => c.p_value.toPrecision(3) },
            { key: "q", label: "q (BH)", numeric: true, render: (c) => c.q_value.toPrecision(3) },
          ],
          rows: comparison.comparisons,
          empty: "Fewer than two Go versions have counted runs here.",
        })));
    } catch (err) { box.replaceChildren(errorBox(err)); }
  }
  await refresh();
  return { parts: ["runs", "agents", "analyses"], refresh };
}
