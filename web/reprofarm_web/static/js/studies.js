// A study's words and tables: its kind, verdicts and cell decisions in plain
// words, counts as k/n with their 95% interval, the arms, the verdict per
// hardware and the cells (docs/statistics.md, "Studies", says what they mean).

import * as fmt from "./format.js";
import { h, table } from "./components.js";

/** What each kind of job asks, as the jobs list says it. */
export const KIND = { matrix: "job", verify: "is it fixed? (study)", search: "where does it hang? (study)" };

export function isStudy(job) { return job.kind === "verify" || job.kind === "search"; }

const VERDICT = {
  fixed: "Fixed",
  "not-fixed": "Not fixed",
  undecided: "Not decided yet",
};

/** A verify verdict in words; a study that stopped undecided ran out of budget. */
export function verdictWords(verdict, decided) {
  if (verdict === "undecided" && decided) { return "Not decided: the budget ran out"; }
  return VERDICT[verdict] || verdict;
}

const DECISION = {
  search: { reproduces: "hangs here", "does-not": "does not hang here", undecided: "not decided yet" },
  verify: {
    reproduces: "baseline hangs here: compared",
    "does-not": "baseline does not hang here: left out",
    undecided: "checking that the baseline hangs here",
  },
};

export function decisionWords(kind, decision) { return (DECISION[kind] || {})[decision] || decision; }

/** "3/20 hung · 15.0% (95%: 5.2% to 36.0%)" with data-k and data-n for the tests. */
export function tally(t) {
  if (!t) { return "–"; }
  const rate = t.runs ? ` · ${fmt.pct(t.hangs / t.runs)}` : "";
  return h("span", { class: "tally", dataset: { k: t.hangs, n: t.runs } },
    h("strong", {}, `${fmt.kOfN(t.hangs, t.runs)} hung`), rate,
    h("span", { class: "ci" }, ` (95%: ${fmt.interval(t.ci95_low, t.ci95_high)})`));
}

export function chance(c) { return c === null || c === undefined ? "hangtest's default" : String(c); }

/** An arm's differences from the other as "control chance 0.001, Go 1.25.5". */
export function overrides(values) {
  const entries = Object.entries(values || {});
  if (!entries.length) { return "the common settings"; }
  return entries.map(([k, v]) => `${k.replaceAll("_", " ")} ${v === null ? "default" : v}`).join(", ");
}

export function armsTable(study) {
  const spec = study.spec;
  const arms = [["baseline", study.baseline, spec.baseline], ["candidate", study.candidate, spec.candidate]];
  return table({
    id: "arms",
    caption: `Each arm's counted runs: hangs with the bug's label (${study.label || "not known yet"}) of runs `
      + "that finished; hangs with another label are shown and not counted.",
    columns: [
      { key: "arm", label: "Arm", render: ([arm]) => h("strong", {}, arm) },
      { key: "runs", label: "What it runs", render: ([, , o]) => overrides(o) },
      { key: "tally", label: "Hung with the bug / counted runs", render: ([, t]) => tally(t) },
      { key: "other", label: "Other hangs (not counted)", numeric: true, render: ([, t]) => t.other_hangs },
      { key: "pending", label: "Hangs waiting for analysis", numeric: true, render: ([, t]) => t.pending },
      { key: "open", label: "Queued or running", numeric: true, render: ([, t]) => t.open },
    ],
    rows: arms,
    rowAttrs: ([arm]) => ({ dataset: { arm } }),
  });
}

export function hardwareTable(study) {
  return table({
    id: "by-hardware",
    caption: "The verdict on each hardware configuration where the baseline hangs.",
    columns: [
      { key: "hardware", label: "Hardware", render: (v) => v.hardware },
      { key: "verdict", label: "Verdict", render: (v) => h("span", { class: `verdict v-${v.verdict}` }, verdictWords(v.verdict, study.decided)) },
      { key: "baseline", label: "Baseline", render: (v) => tally(v.baseline) },
      { key: "candidate", label: "Candidate", render: (v) => tally(v.candidate) },
      { key: "ratio", label: "Candidate's rate at most (× baseline's)", numeric: true, render: (v) => ratio(v.ratio_upper95) },
      { key: "p", label: "p-value", numeric: true, render: (v) => pValue(v.p_value) },
    ],
    rows: study.by_hardware || [],
    empty: "No hardware configuration where the baseline hangs yet.",
  });
}

export function ratio(x) { return x === null || x === undefined ? "no bound yet" : `${Number(x.toPrecision(3))}×`; }
export function pValue(p) { return p === null || p === undefined ? "–" : Number(p.toPrecision(3)).toString(); }

export function cellsTable(study) {
  const verify = study.kind === "verify";
  const anyChance = study.cells.some((c) => c.control_chance !== null);
  const counts = verify
    ? [
      { key: "baseline", label: "Baseline", render: (c) => tally(c.arms && c.arms.baseline) },
      { key: "candidate", label: "Candidate", render: (c) => tally(c.arms && c.arms.candidate) },
    ]
    : [{ key: "tally", label: "Hung / counted runs", render: (c) => tally(c) }];
  return table({
    id: "study-cells",
    caption: verify
      ? "Each cell: whether the baseline hangs there (only those cells are compared), and each arm's runs."
      : `Each cell: hangs here (a rate of at least ${fmt.pct(study.spec.hi)}), does not hang here `
        + `(at most ${fmt.pct(study.spec.lo)}), or not decided yet; its hangs of counted runs.`,
    columns: [
      { key: "hardware", label: "Hardware", render: (c) => c.hardware },
      { key: "cpus", label: "CPUs", render: (c) => fmt.cpus(c.cpus) },
      { key: "affinity", label: "Affinity", render: (c) => c.affinity },
      { key: "go", label: "Go", render: (c) => c.go_version },
      anyChance ? { key: "chance", label: "Control chance", render: (c) => chance(c.control_chance) } : null,
      { key: "decision", label: "Decision", render: (c) => h("span", { class: `decision d-${c.decision}` }, decisionWords(study.kind, c.decision)) },
      ...counts,
      { key: "open", label: "Queued or running", numeric: true, render: (c) => c.open },
    ].filter(Boolean),
    rows: study.cells,
    rowAttrs: (c) => ({ dataset: { decision: c.decision, chance: c.control_chance === null ? "default" : c.control_chance, cpus: c.cpus === null ? "all" : c.cpus } }),
    empty: "This study has no cells.",
  });
}
