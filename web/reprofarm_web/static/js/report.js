// The analyzer's report, drawn the same way wherever it is shown (a run's dumps, the
// triage page): label with its confidence, signature, evidence, stuck goroutines,
// threads and what could not be read.

import { h, table, dl } from "./components.js";

const CONFIDENCE = {
  strong: "the goroutines or threads the label rests on are all there, in traceback form",
  partial: "the text was repaired or cut, or does not say why it was written",
  weak: "the label rests on a stack without its header or on single frames",
};

/** "strong" / "partial" / "weak" as a small badge whose title says what it means. */
export function confidence(value) {
  if (!value) { return null; }
  return h("span", { class: `badge confidence c-${value}`, title: CONFIDENCE[value] || "" }, `${value} confidence`);
}

/** A label and its confidence, side by side. */
export function labelled(label, value) {
  return h("span", { class: "labelled" }, h("code", {}, label), " ", confidence(value));
}

export function reportParts(report) {
  return [
    (report.evidence || []).length ? h("ul", { class: "evidence" }, report.evidence.map((e) => h("li", {}, `${e.detail} `, h("span", { class: "muted" }, `(${e.rule})`)))) : null,
    (report.stuck || []).length ? table({
      caption: "Stuck goroutines (identical stacks collapsed)",
      columns: [
        { key: "count", label: "Goroutines", numeric: true },
        { key: "state", label: "State" },
        { key: "goroutines", label: "Ids", render: (g) => g.goroutines.slice(0, 12).join(", ") + (g.goroutines.length > 12 ? "…" : "") },
        { key: "frames", label: "Frames (innermost first)", render: (g) => h("code", { class: "frames" }, g.frames.join("\n")) },
      ],
      rows: report.stuck,
    }) : null,
    (report.threads || []).length ? table({
      caption: "Threads",
      columns: [{ key: "id", label: "Thread" }, { key: "top", label: "Top frame", render: (t) => h("code", {}, t.top) },
        { key: "role", label: "Role", render: (t) => t.role || "–" }],
      rows: report.threads.filter((t) => t.role).concat(report.threads.filter((t) => !t.role)).slice(0, 40),
    }) : null,
    (report.problems || []).length ? h("p", { class: "muted problems" }, "Repaired or not read: " + report.problems.join("; ")) : null,
  ];
}

export function facts(report, extra) {
  return dl([["Signature", h("code", {}, report.signature)], ...(extra || []),
    report.goroutines !== null && report.goroutines !== undefined ? ["Goroutines", report.goroutines] : null,
    report.os_build ? ["OS build (dump)", report.os_build] : null]);
}
