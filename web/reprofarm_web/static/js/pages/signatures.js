// Signatures: hung runs bucketed by what their dumps show, with first and last
// seen, counts by hardware and Go version, and example runs; for one signature
// (?key=), also the triaged dumps kept with it (seen in CI).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, filterBar, errorBox } from "../components.js";
import { replaceQuery, href } from "../router.js";
import { vocabulary } from "../vocabulary.js";

export const name = "signatures";

function counts(map, render) {
  const entries = Object.entries(map).sort((a, b) => b[1] - a[1]);
  return h("ul", { class: "counts" }, entries.slice(0, 6).map(([k, n]) => h("li", {}, render(k), `: ${n}`)),
    entries.length > 6 ? h("li", { class: "muted" }, `and ${entries.length - 6} more`) : null);
}

export async function mount(root, { query }) {
  document.title = "Signatures · reprofarm";
  const state = { label: query.label || "", key: query.key || "" };
  const words = await vocabulary();
  const controls = h("div");
  const box = h("div", { class: "scroll" });
  root.append(section("Signature buckets", controls, box));
  const change = (key, value) => {
    state[key] = value;
    replaceQuery(state);
    refresh();
  };
  controls.replaceChildren(filterBar([
    { name: "label", label: "Label", options: [["", "any"], ...words.labels.filter((l) => l !== "pending").map((l) => [l, l])] },
  ], state, change));

  async function refresh() {
    try {
      let buckets = await api.get("/api/v1/signatures", { label: state.label });
      if (state.key) { buckets = buckets.filter((b) => b.key === state.key); }
      const fingerprints = [...new Set(buckets.flatMap((b) => Object.keys(b.by_hardware)))].slice(0, 100);
      const configs = fingerprints.length
        ? await api.get("/api/v1/views/hardware", { fingerprints: fingerprints.join(",") }) : [];
      const names = new Map(configs.map((c) => [c.fingerprint, c.label]));
      const hw = (fp) => link(href(`/hardware/${fp}`), names.get(fp) || fmt.short(fp));
      // One signature: the dumps kept with it from outside the farm (POST /triage), too.
      const kept = state.key
        ? await api.get(`/api/v1/signatures/${encodeURIComponent(state.key)}/seen-in-ci`, { limit: 50 }) : [];
      box.replaceChildren(
        ...(state.key ? [h("p", {}, `One bucket (${state.key}). `, link(href("/signatures"), "All buckets"))] : []),
        table({
          id: "signatures",
          columns: [
            { key: "signature", label: "Signature", render: (b) => h("span", { id: `sig-${b.key}` }, h("code", {}, b.signature), h("br"), h("span", { class: "muted" }, b.label)) },
            { key: "runs", label: "Reproduced here", numeric: true, render: (b) => h("span", {}, `${b.runs} hung runs`,
              b.seen_in_ci ? h("span", { class: "muted seen-in-ci" }, h("br"),
                link(href("/signatures", { key: b.key }), `seen in CI: ${b.seen_in_ci}`)) : null) },
            { key: "seen", label: "First / last seen", render: (b) => h("span", {}, fmt.time(b.first_seen), h("br"), fmt.time(b.last_seen)) },
            { key: "hardware", label: "By hardware", render: (b) => counts(b.by_hardware, hw) },
            { key: "go", label: "By Go version", render: (b) => counts(b.by_go_version, (v) => `Go ${v}`) },
            { key: "cpus", label: "By CPUs", render: (b) => counts(b.by_cpus, (v) => (v === "1" ? "1 CPU" : `${v} CPUs`)) },
            { key: "examples", label: "Example runs", render: (b) => h("span", {}, b.example_runs.map((id, i) => [i ? ", " : "", link(href(`/runs/${id}`), `#${id}`)])) },
            { key: "rate", label: "Rates", render: (b) => link(href("/", { signature: b.signature }), "hit rate of this signature") },
          ],
          rows: buckets,
          empty: state.key ? "No hung run of the farm has this signature." : "No hung run has been analysed yet.",
        }),
        ...(state.key ? [table({
          id: "seen-in-ci",
          caption: "Seen in CI: triaged dumps kept with this signature, newest first (the latest 50)",
          columns: [
            { key: "id", label: "Kept dump", numeric: true, render: (d) => `#${d.id}` },
            { key: "sent_at", label: "Sent", render: (d) => fmt.time(d.sent_at) },
            { key: "sent_by", label: "By" },
            { key: "source", label: "From", render: (d) => d.source || "–" },
            { key: "label", label: "Label", render: (d) => `${d.label} (${d.confidence})` },
            { key: "size", label: "Bytes", numeric: true, render: (d) => d.size.toLocaleString() },
          ],
          rows: kept,
          empty: "No triaged dump was kept with this signature.",
        })] : []));
    } catch (err) { box.replaceChildren(errorBox(err)); }
  }
  await refresh();
  return { parts: ["analyses"], refresh };
}
