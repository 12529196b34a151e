// A study: its decision so far in words with the reason, the arms (verify) or the
// cells' decisions (search) as k/n with their 95% interval, the runs it spent
// against its budget, a plot of how it got there, and cancel for a submitter.

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, errorBox, badge, progress, dl, cancelButton, confirming } from "../components.js";
import { href } from "../router.js";
import { plot } from "../plot.js";
import * as words from "../studies.js";

export const name = "study";
const OPEN = ["queued", "running"];

/** The answer in one line: verify's verdict, or search's cells by decision. */
function decision(study) {
  if (study.kind === "verify") {
    return h("p", { id: "decision", class: `answer v-${study.verdict}`, dataset: { decided: study.decided } },
      words.verdictWords(study.verdict, study.decided), h("span", { class: "why" }, study.reason));
  }
  const n = (d) => study.cells.filter((c) => c.decision === d).length;
  const cells = (k) => `${k} cell${k === 1 ? "" : "s"}`;
  const open = n("undecided");
  const head = `${study.decided ? "Done" : "Deciding"}: hangs in ${cells(n("reproduces"))}, `
    + `does not hang in ${cells(n("does-not"))}` + (open ? `, ${cells(open)} not decided` : "");
  return h("p", { id: "decision", class: "answer", dataset: { decided: study.decided } },
    head, h("span", { class: "why" }, study.reason));
}

function question(study) {
  const s = study.spec;
  if (study.kind === "verify") {
    const below = s.margin === 1 ? "less often than the baseline" : `less than 1/${s.margin} as often as the baseline`;
    return `Is it fixed? The candidate counts as fixed when it hangs ${below}, at 95% confidence; `
      + "as not fixed as soon as it hangs with the bug's label.";
  }
  return `Where does it hang? Each cell is decided: hangs here (at least ${fmt.pct(s.hi)} of runs hang) or `
    + `does not (at most ${fmt.pct(s.lo)}). A cell that does not hang is called "hangs here" at most `
    + `${fmt.pct(s.alpha, 0)} of the time, one that hangs is missed at most ${fmt.pct(s.beta, 0)} of the time. `
    + "Runs go to the cells not decided yet.";
}

function spent(study) {
  const runs = study.budget_runs
    ? h("span", { class: "with-bar" }, progress(study.runs_used, study.budget_runs),
      ` ${study.runs_used} of ${study.budget_runs} runs`)
    : `${study.runs_used} runs (no run budget)`;
  const hours = study.budget_run_hours
    ? `${fmt.duration(3600 * study.run_hours_used)} of ${fmt.duration(3600 * study.budget_run_hours)}`
    : fmt.duration(3600 * study.run_hours_used);
  return [["Runs spent", h("span", { id: "spent" }, runs, ` (${study.runs_counted} counted)`)], ["Run time spent", hours]];
}

function facts(study) {
  const s = study.spec;
  const verify = study.kind === "verify";
  const uniform = study.runs_uniform;
  return dl([
    ["Question", question(study)],
    ["Scenario", s.scenario],
    verify ? ["Baseline runs", words.overrides(s.baseline)] : null,
    verify ? ["Candidate runs", words.overrides(s.candidate)] : null,
    verify ? ["The bug's label", study.label || "not known yet: the first analysed baseline hang sets it"] : null,
    ["Go versions", (s.go_versions || []).join(", ")],
    !verify && s.control_chance ? ["Control chances", s.control_chance.map(words.chance).join(", ")] : null,
    ["Length", s.duration_s ? fmt.duration(s.duration_s) : `${fmt.count(s.iterations)} iterations per worker`],
    ["Stall timeout", fmt.duration(s.stall_timeout_s)],
    ...spent(study),
    uniform ? ["Against a fixed plan", h("span", { id: "uniform" },
      `would need ${uniform} runs (the same number in every cell, with the same error rates); `
      + `this study has used ${study.runs_used}, ${fmt.pct(study.runs_used / uniform, 0)} of that`)] : null,
    verify ? ["Candidate's rate at most", `${words.ratio(study.ratio_upper95)} the baseline's (95% upper bound)`] : null,
    verify ? ["p-value", words.pValue(study.p_value)] : null,
    study.more_clean_runs ? ["To decide", `about ${study.more_clean_runs} more clean candidate runs`] : null,
    ["Its runs", link(href(`/jobs/${study.job_id}`), `job #${study.job_id}: every run, its dumps and analyses`)],
  ]);
}

function tracePlot(study) {
  const points = study.trace.map((p) => ({ x: p.runs, y: p.value }));
  const last = points.length ? points[points.length - 1].x : 0;
  if (study.kind === "search") {
    const total = study.cells.length;
    return [plot({
      id: "trace", points, title: `Cells decided after each finished run: ${points.length ? points[points.length - 1].y : 0} of ${total}`,
      x: { max: last, label: "finished runs" },
      y: { min: 0, max: Math.max(1, total), integer: true, label: "cells decided" },
      line: { y: total, label: `all ${total} cells` },
    }), h("p", { class: "muted" }, "How many cells were decided after each finished run; a decided cell gets no more runs.")];
  }
  const limit = 1 / study.spec.margin;
  const values = points.map((p) => p.y).filter((v) => v > 0);
  const lo = Math.max(1e-4, Math.min(limit, ...values) / 2);
  const hi = Math.min(1e4, Math.max(limit, ...values) * 2);
  return [plot({
    id: "trace", points, title: `The candidate's highest likely rate as a multiple of the baseline's, after each finished run; fixed under ${limit}`,
    x: { max: last, label: "finished runs (both arms)" },
    y: { min: 10 ** Math.floor(Math.log10(lo)), max: 10 ** Math.ceil(Math.log10(hi)), log: true, label: "× baseline's rate" },
    line: { y: limit, label: `fixed under ${Number(limit.toPrecision(3))} (1/margin)` },
  }), h("p", { class: "muted" },
    "After each finished run: the highest the candidate's hang rate can be, as a multiple of the baseline's, at 95% "
    + "confidence (log scale). The candidate counts as fixed once the line goes under the dashed one. "
    + "No line yet: no bound until both arms have counted runs and the baseline has hung.")];
}

export async function mount(root, { params, me }) {
  const id = params.id;
  document.title = `Study ${id} · reprofarm`;
  const heading = h("h2", {}, `Study #${id}`);
  const actions = h("div", { class: "actions" });
  const answer = h("div");
  const factsBox = h("div");
  const armsBox = h("div", { class: "scroll" });
  const cellsBox = h("div", { class: "scroll" });
  const plotBox = h("div");
  const armsSection = section("Arms", armsBox);
  armsSection.hidden = true;
  root.append(
    h("section", { "aria-label": "study" }, heading, actions, answer,
      h("div", { class: "side-by-side" }, factsBox, h("div", {}, h("h3", {}, "How it got there"), plotBox))),
    armsSection,
    section("Cells", cellsBox));

  function drawActions(study) {
    actions.replaceChildren();
    if (!me.can_submit || !OPEN.includes(study.status)) { return; }
    actions.append(cancelButton({
      id: "cancel-study",
      label: "Cancel study",
      question: "Cancel this study? It makes no more runs; runs not started are cancelled, running ones stop at "
        + "their next heartbeat, and what finished stays counted.",
      onConfirm: async () => {
        await api.post(`/api/v1/studies/${id}/cancel`);
        await refresh();
      },
    }));
  }

  async function refresh() {
    try {
      const study = await api.get(`/api/v1/studies/${id}`);
      heading.replaceChildren(`Study #${id}: ${words.KIND[study.kind]} `, badge(study.status));
      answer.replaceChildren(decision(study));
      factsBox.replaceChildren(facts(study));
      const verify = study.kind === "verify";
      armsSection.hidden = !verify;
      armsBox.replaceChildren(...(verify
        ? [words.armsTable(study), h("h3", {}, "Per hardware configuration"), words.hardwareTable(study)]
        : []));
      cellsBox.replaceChildren(words.cellsTable(study));
      plotBox.replaceChildren(...tracePlot(study));
      if (!confirming(actions)) { drawActions(study); }
    } catch (err) { answer.replaceChildren(errorBox(err)); }
  }
  await refresh();
  return { parts: ["runs", "jobs", "analyses"], refresh };
}
