// The dashboard: reads /api/v1/stats and /api/v1/jobs every 3 seconds.
// The token comes from the link `reprofarm up` prints (#token=...) or the form,
// and stays in this browser's localStorage.
"use strict";

const REFRESH_MS = 3000;
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {
  localStorage.setItem("reprofarm-token", hash.get("token"));
  history.replaceState(null, "", location.pathname);
}

function token() { return localStorage.getItem("reprofarm-token") || ""; }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401) { throw new Error("unauthorized"); }
  if (!response.ok) { throw new Error(path + ": HTTP " + response.status); }
  return response.json();
}

function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) { td.className = cls; }
  return td;
}

function rateBar(row) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bar");
  svg.setAttribute("viewBox", "0 0 220 16");
  const x = (v) => 10 + 200 * (v || 0);
  const bar = document.createElementNS(ns, "rect");
  bar.setAttribute("x", 10); bar.setAttribute("y", 3); bar.setAttribute("height", 10);
  bar.setAttribute("width", Math.max(0, x(row.hit_rate) - 10)); bar.setAttribute("fill", "#b3261e");
  svg.appendChild(bar);
  const whisker = document.createElementNS(ns, "line");
  whisker.setAttribute("x1", x(row.ci95_low)); whisker.setAttribute("x2", x(row.ci95_high));
  whisker.setAttribute("y1", 8); whisker.setAttribute("y2", 8);
  whisker.setAttribute("stroke", "#1d2330"); whisker.setAttribute("stroke-width", 2);
  whisker.setAttribute("class", "whisker");
  svg.appendChild(whisker);
  const td = document.createElement("td");
  td.appendChild(svg);
  return td;
}

function renderRates(rows) {
  const body = document.querySelector("#rates tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.append(
      cell(row.hardware_label || row.hardware || "unknown"), cell(row.runs),
      cell(row.hangs, row.hangs ? "hung" : ""), cell(pct(row.hit_rate)),
      cell(pct(row.ci95_low) + " – " + pct(row.ci95_high)), rateBar(row));
    return tr;
  }));
}

function renderJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren(...jobs.map((job) => {
    const r = job.runs;
    const finished = r.passed + r.hung + r.failed + r.error + r.lost + r.cancelled;
    const tr = document.createElement("tr");
    const progress = document.createElement("td");
    const outer = document.createElement("div");
    outer.className = "progress";
    outer.title = finished + " of " + job.total_runs + " runs finished";
    const inner = document.createElement("div");
    inner.style.width = (job.total_runs ? 100 * finished / job.total_runs : 0) + "%";
    outer.appendChild(inner);
    progress.appendChild(outer);
    tr.append(cell("#" + job.id), cell(job.spec.scenario), cell(job.status), progress,
      cell(r.passed), cell(r.hung, r.hung ? "hung" : ""), cell(r.failed), cell(r.error), cell(r.lost));
    return tr;
  }));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [stats, jobs] = await Promise.all([api("/api/v1/stats?group_by=hardware"), api("/api/v1/jobs")]);
    renderRates(stats.rows);
    renderJobs(jobs);
    document.getElementById("token-section").hidden = true;
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    if (err.message === "unauthorized") { document.getElementById("token-section").hidden = false; }
    status.textContent = "not updated: " + err.message;
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("reprofarm-token", document.getElementById("token-input").value.trim());
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
