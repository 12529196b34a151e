// Triage: "is my CI hang this bug?" Paste a dump (or drop a file) from a CI log or an
// issue; the farm analyses it (POST /api/v1/triage) and shows the report beside its own
// evidence for that signature: the bucket, the hit rate per hardware with k/n and 95%
// intervals, the first and latest runs, the Go versions it appeared under and never did,
// and how often it was seen in CI (kept dumps).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, errorBox, dl } from "../components.js";
import { href } from "../router.js";
import { facts, labelled, reportParts } from "../report.js";

export const name = "triage";

const pct = (x) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;

function runMark(run) {
  if (!run) { return "–"; }
  return h("span", {}, link(href(`/runs/${run.id}`), `run #${run.id}`),
    ` ${fmt.time(run.finished_at)}, Go ${run.go_version}, hardware `,
    link(href(`/hardware/${run.hardware}`), run.hardware.slice(0, 12)));
}

function farmEvidence(answer) {
  const seen = answer.seen_in_ci;
  const ci = seen.dumps
    ? `seen in CI: ${seen.dumps} kept dump${seen.dumps === 1 ? "" : "s"}, ${fmt.time(seen.first_sent)} to ${fmt.time(seen.last_sent)}`
    : "seen in CI: no kept dump has this signature";
  const b = answer.bucket;
  if (!b) {
    return h("div", { id: "farm-evidence" },
      h("h3", {}, "The farm's evidence"),
      h("p", { id: "no-bucket" }, "Never reproduced here: no hung run of the farm has this signature (or one close to it)."),
      h("p", { class: "muted" }, ci));
  }
  return h("div", { id: "farm-evidence" },
    h("h3", {}, "The farm's evidence: reproduced here"),
    dl([
      ["Bucket", h("span", {}, link(href("/signatures", { key: b.key }), h("code", {}, b.signature)),
        b.match === "exact" ? " (the same signature)" : ` (similar: ${Math.round(100 * b.similarity)}% of the stuck goroutines shared)`)],
      ...(b.match === "exact" ? [] : [["Why this bucket", h("span", { id: "similar-reason" }, b.reason)]]),
      ["Hung runs", b.hung_runs],
      ["First run", runMark(b.first_run)],
      ["Latest run", runMark(b.latest_run)],
      ["Go versions where it appeared", b.go_versions_seen.join(", ") || "–"],
      ["Go versions where it never appeared", b.go_versions_never.join(", ") || "none (no other version was run)"],
      ["Seen in CI", seen.dumps ? link(href("/signatures", { key: seen.key }), ci.replace(/^seen in CI: /, "")) : ci.replace(/^seen in CI: /, "")],
    ]),
    table({
      id: "by-hardware",
      caption: "Hit rate of this signature per hardware configuration (counted runs of the scenarios it appeared in)",
      columns: [
        { key: "label", label: "Hardware", render: (r) => link(href(`/hardware/${r.hardware}`), r.label) },
        { key: "k", label: "Hangs / runs", numeric: true, render: (r) => `${r.hangs}/${r.runs}` },
        { key: "rate", label: "Hit rate", numeric: true, render: (r) => pct(r.runs ? r.hangs / r.runs : 0) },
        { key: "ci", label: "95% interval (Wilson)", render: (r) => `${pct(r.ci95_low)} – ${pct(r.ci95_high)}` },
      ],
      rows: b.by_hardware,
    }));
}

function shown(answer) {
  return h("div", { id: "triage-result", class: "analysis" },
    h("h3", {}, `${answer.kind}: `, labelled(answer.label, answer.confidence)),
    facts(answer, answer.kept_id
      ? [["Kept", `as triaged dump ${answer.kept_id}${answer.already_kept ? " (already kept: not stored again)" : ""}`]]
      : []),
    reportParts(answer),
    farmEvidence(answer));
}

export async function mount(root, { me }) {
  document.title = "Triage · reprofarm";
  const out = h("div", { "aria-live": "polite" });
  const paste = h("textarea", { id: "triage-text", name: "text", rows: "14", spellcheck: "false",
    placeholder: "goroutine 7 [syscall, 9 minutes]:\nsyscall.CancelIoEx(...)\n…  (a CI log, go test -json output or an issue page's text will do)" });
  const file = h("input", { type: "file", id: "triage-file", name: "file" });
  const chosen = h("span", { class: "muted", id: "triage-file-name" });
  const keep = h("input", { type: "checkbox", id: "triage-keep", name: "keep", disabled: !me.can_submit });
  const source = h("input", { id: "triage-source", name: "source", placeholder: "https://ci.example/job/123 (optional)" });
  let dropped = null; // a file's bytes, sent instead of the paste box

  file.addEventListener("change", () => {
    dropped = file.files[0] || null;
    chosen.textContent = dropped ? `${dropped.name} (${fmt.bytes(dropped.size)}) will be sent` : "";
  });
  const drop = h("div", { id: "triage-drop", class: "drop", tabindex: "0" },
    "Drop a dump file here, or ", h("label", { for: "triage-file", class: "link" }, "choose one"), " ", file, " ", chosen);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    dropped = e.dataTransfer.files[0] || null;
    chosen.textContent = dropped ? `${dropped.name} (${fmt.bytes(dropped.size)}) will be sent` : "";
  });

  const form = h("form", { id: "triage-form" },
    h("div", { class: "field" }, h("label", { for: "triage-text" }, "Paste a goroutine dump"), paste),
    drop,
    h("div", { class: "field" }, h("label", { for: "triage-source" }, "Where it comes from"), source),
    h("div", { class: "check" }, keep, " ", h("label", { for: "triage-keep" },
      me.can_submit ? "Keep it (who sent it and when), so the farm shows it as seen in CI" : "Keeping it needs a submitter token")),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "triage-submit", class: "primary" }, "Triage")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = dropped ? await dropped.arrayBuffer() : paste.value;
    out.replaceChildren(h("p", {}, "analysing…"));
    try {
      const answer = await api.postRaw("/api/v1/triage", body, { keep: keep.checked ? "true" : "", source: source.value.trim() });
      out.replaceChildren(shown(answer));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  });
  root.append(section("Is my CI hang this bug?",
    h("p", { class: "muted" }, "The analyzer reads dumps as people paste them (notes, indentation, cut tops and bottoms, HTML, go test -json) and says what it repaired; the farm then shows where it reproduced that signature."),
    form, out));
  return null;
}
