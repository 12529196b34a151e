// A run: hardware, agent, CPU set the child reported, Go version and build, its
// timeline, artifacts (size, sha256, download), the analyzer's verdict, and
// hangtest's own events (its stdout artifact, JSON lines: docs/hangtest.md).

import * as api from "../api.js";
import * as fmt from "../format.js";
import { h, link, section, table, errorBox, badge, dl } from "../components.js";
import { href } from "../router.js";
import { facts as reportFacts, labelled, reportParts } from "../report.js";

export const name = "run";

/** hangtest's JSON lines; lines that are not JSON are kept as text. */
export function parseEvents(textBody) {
  return textBody.split("\n").filter((l) => l.trim()).map((line) => {
    try { return JSON.parse(line); } catch (_ignored) { return { event: "text", message: line }; }
  });
}

function summary(e) {
  switch (e.event) {
    case "start": return `hangtest ${e.hangtest_version || ""} built with ${e.go_version || "?"} (${e.goos}/${e.goarch}), `
      + `GOMAXPROCS ${e.gomaxprocs}, CPU set ${JSON.stringify(e.cpu_set)}, pid ${e.pid}, ${e.workers} workers`;
    case "progress": return `${fmt.count(e.iterations)} iterations after ${fmt.duration(e.elapsed_s)}, ${e.errors} errors`;
    case "stall": return `workers ${(e.workers || []).map((w) => `${w.worker} (iteration ${w.iteration}, ${fmt.duration(w.stalled_s)})`).join(", ")} stalled; `
      + `goroutine dump ${e.goroutine_dump || e.dump_error || "–"}; ${e.goroutine_count ?? "?"} goroutines`;
    case "dump": return `dump on ${e.reason}: ${e.goroutine_dump || e.dump_error}`;
    case "error": return `worker ${e.worker}, iteration ${e.iteration}: ${e.message}`;
    case "done": return `${e.reason}, ${fmt.count(e.iterations)} iterations, exit code ${e.exit_code}`;
    default: return e.message || JSON.stringify(e);
  }
}

function timeline(run, events) {
  const first = (kind) => events.find((e) => e.event === kind);
  const last = events.length ? events[events.length - 1] : null;
  const start = first("start");
  const stall = first("stall");
  const dumps = events.filter((e) => e.event === "dump");
  const result = run.result || {};
  const steps = [
    ["leased", run.leased_at, "the agent took the run"],
    ["started", start && start.t, start ? `hangtest pid ${start.pid} on CPUs ${JSON.stringify(start.cpu_set)}` : "no start event"],
    stall ? ["stalled", stall.t, `after ${fmt.duration(stall.elapsed_s)}`] : null,
    stall && stall.goroutine_dump ? ["goroutine dump", stall.t, stall.goroutine_dump] : null,
    ...dumps.map((d) => ["goroutine dump", d.t, `${d.reason}: ${d.goroutine_dump || d.dump_error}`]),
    result.killed ? ["killed", last && last.t, `after hangtest's last event${result.unkillable ? "; it survived the kill: the machine needs a reboot" : ""}`] : null,
    ["finished", run.finished_at, `${run.status}: ${run.reason || "–"}`],
  ].filter(Boolean);
  return h("ol", { class: "timeline", id: "timeline" }, steps.map(([what, when, detail]) =>
    h("li", {}, h("strong", {}, what), " ", h("time", { datetime: when || "" }, fmt.time(when)), " — ", detail)));
}

async function analysisBlock(brief) {
  if (!brief.label) { return h("p", { class: "error" }, `${brief.kind} could not be read: ${brief.error}`); }
  const a = await api.get(`/api/v1/artifacts/${brief.artifact_id}/analysis`);
  const report = a.report || {};
  return h("div", { class: "analysis" },
    h("h3", {}, `${brief.kind} (artifact ${brief.artifact_id}): `, labelled(a.label, a.confidence)),
    reportFacts({ ...report, signature: a.signature }, [["Rules version", a.rules_version], ["Analysed", fmt.time(a.analyzed_at)]]),
    reportParts(report));
}

export async function mount(root, { params }) {
  const runId = params.id;
  document.title = `Run ${runId} · reprofarm`;
  const box = h("div");
  root.append(box);

  let shown = "";
  async function refresh() {
    let view;
    try { view = await api.get(`/api/v1/views/runs/${runId}`); } catch (err) { box.replaceChildren(errorBox(err)); return; }
    const seen = JSON.stringify(view);
    if (seen === shown) { return; } // another run changed: keep this page as the reader left it
    shown = seen;
    const { run, agent, hardware, build } = view;
    const result = run.result || {};
    const stdout = run.artifacts.find((a) => a.kind === "stdout" && a.complete);
    let events = [];
    let eventsError = null;
    if (stdout) {
      try { events = parseEvents(await api.text(stdout.url)); } catch (err) { eventsError = err; }
    }
    const analysed = new Map(view.analyses.map((a) => [a.artifact_id, a]));
    const status = h("span", { class: "status-line", role: "status" });
    const artifactRows = run.artifacts.map((a) => ({ ...a, analysis: analysed.get(a.id) }));
    const facts = dl([
      ["Status", h("span", {}, badge(run.status), " ", run.reason)],
      ["Job", h("span", {}, link(href(`/jobs/${run.job_id}`), `#${run.job_id}`), ` (${view.job_status}), attempt ${run.attempt}`,
        run.retry_of ? h("span", {}, ", retry of ", link(href(`/runs/${run.retry_of}`), `#${run.retry_of}`)) : "")],
      ["Scenario", run.scenario],
      ["Go version", `${run.go_version} asked; the binary says ${result.go_version || "–"} (hangtest ${result.hangtest_version || "–"}, ${result.binary_arch || "–"})`],
      ["Build", build ? h("span", {}, `#${build.id} ${build.toolchain_version} for ${build.target}, sha256 `, h("code", {}, build.sha256),
        build.fix_present ? " (has the fix)" : "") : "–"],
      ["CPUs", `${fmt.cpus(run.cpus)} asked, affinity ${run.affinity}; requested set ${JSON.stringify(result.requested_cpu_set ?? null)}`],
      ["CPU set (as the child reported it)", h("code", { id: "cpu-set" }, JSON.stringify(result.cpu_set ?? null))],
      ["GOMAXPROCS", result.gomaxprocs ?? "–"],
      ["Agent", agent ? h("span", {}, link(href("/agents", { search: agent.name }), agent.name),
        ` (${agent.pools.join(", ") || "no pool"}; ${agent.online ? "online" : "offline"}; version ${agent.agent_version})`) : "–"],
      ["Hardware", hardware ? h("span", {}, link(href(`/hardware/${hardware.fingerprint}`), hardware.label),
        ` · OS build ${hardware.os_version}`) : "–"],
      ["Iterations", fmt.count(run.iterations)],
      ["Duration", fmt.duration(run.duration_s)],
      ["Exit code", result.exit_code ?? "–"],
      ["Errors", result.errors !== undefined ? `${result.errors}${result.first_error ? `; first: ${result.first_error}` : ""}` : "–"],
      ["Label", run.label ? h("span", {}, labelled(run.label, run.confidence), " ", run.signature_key
        ? link(href("/signatures", { key: run.signature_key }), run.signature) : "") : run.status === "hung" ? "pending (not analysed yet)" : "–"],
      run.late_result ? ["Late result", "kept for the record, not counted (the lease had expired)"] : null,
    ]);
    const artifacts = table({
      id: "artifacts",
      columns: [
        { key: "name", label: "Artifact", render: (a) => a.name },
        { key: "kind", label: "Kind" },
        { key: "bytes", label: "Size", numeric: true, render: (a) => h("span", { title: `${a.bytes} bytes` }, fmt.bytes(a.bytes)) },
        { key: "sha256", label: "sha256", render: (a) => h("code", { class: "sha" }, a.sha256) },
        { key: "get", label: "Download", render: (a) => (a.complete
          ? h("button", { type: "button", class: "download", dataset: { artifact: a.id, sha256: a.sha256 },
            onclick: async () => {
              status.textContent = `downloading ${a.name}…`;
              try {
                const got = await api.download(a.url, a.name);
                status.textContent = got === null ? `${a.name} downloaded`
                  : got === a.sha256 ? `${a.name} downloaded; sha256 matches` : `${a.name}: sha256 ${got} does NOT match`;
              } catch (err) { status.textContent = err.message; }
            } }, "download")
          : `uploading (${fmt.bytes(a.bytes)})`) },
        { key: "analysis", label: "Analysis", render: (a) => (a.analysis
          ? h("span", {}, a.analysis.label ? h("a", { href: `#analysis-${a.id}`, onclick: (e) => {
            e.preventDefault();
            document.getElementById(`analysis-${a.id}`)?.scrollIntoView();
          } }, a.analysis.label) : "unreadable",
          a.analysis.confidence ? h("span", { class: "muted" }, ` (${a.analysis.confidence})`) : null,
          a.kind === "minidump" && a.analysis.label ? h("span", {}, " · ", h("button", { type: "button", class: "link",
            onclick: async () => {
              try { await api.download(`/api/v1/artifacts/${a.id}/debugger-script`, `${a.name.replace(/\.gz$/, "")}.cdb.txt`); }
              catch (err) { status.textContent = err.message; }
            } }, "debugger script")) : null)
          : ["goroutines", "minidump", "core"].includes(a.kind) ? "not analysed yet" : "–") },
      ],
      rows: artifactRows,
      empty: "No artifact (yet).",
    });
    const analyses = h("div");
    for (const brief of view.analyses) {
      const holder = h("div", { id: `analysis-${brief.artifact_id}` });
      analyses.append(holder);
      analysisBlock(brief).then((node) => holder.replaceChildren(node), (err) => holder.replaceChildren(errorBox(err)));
    }
    const progressEvents = events.filter((e) => e.event === "progress");
    const shownEvents = events.filter((e, i) => e.event !== "progress" || i === events.indexOf(progressEvents[0])
      || e === progressEvents[progressEvents.length - 1]);
    const eventsTable = (rows) => table({
      id: "events",
      columns: [
        { key: "t", label: "Time", render: (e) => fmt.time(e.t) },
        { key: "event", label: "Event", render: (e) => h("code", {}, e.event) },
        { key: "what", label: "What", render: summary },
      ],
      rows,
      empty: stdout ? "hangtest wrote no event." : "No stdout artifact (yet).",
    });
    const eventsBox = h("div", {}, eventsTable(shownEvents));
    if (progressEvents.length > 2) {
      eventsBox.append(h("button", { type: "button", onclick: (e) => {
        eventsBox.replaceChildren(eventsTable(events));
        e.target.remove();
      } }, `show all ${progressEvents.length} progress events`));
    }
    box.replaceChildren(
      h("section", { "aria-label": "run" }, h("h2", {}, `Run #${run.id} `, badge(run.status)), facts),
      section("Timeline", timeline(run, events)),
      section("Artifacts", status, h("div", { class: "scroll" }, artifacts)),
      section("Analysis", view.analyses.length ? analyses : h("p", { class: "muted" },
        run.status === "hung" ? "Not analysed yet: the dumps are queued for the analyzer." : "Nothing to analyse.")),
      section("hangtest's events", eventsError ? errorBox(eventsError) : eventsBox));
  }
  await refresh();
  return { parts: ["runs", "analyses", "artifacts"], refresh };
}
