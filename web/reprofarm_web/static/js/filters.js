// The filters the overview, the comparison and the hardware page share, kept in
// the page's URL so that a pasted link shows the same numbers.

export const RANGES = [
  ["", "all time"],
  ["24h", "last 24 hours"],
  ["7d", "last 7 days"],
  ["30d", "last 30 days"],
  ["90d", "last 90 days"],
];

const HOURS = { "24h": 24, "7d": 168, "30d": 720, "90d": 2160 };

/** The api's filter parameters from a page's query. */
export function apiFilters(query) {
  const out = {
    scenario: query.scenario,
    go_version: query.go_version,
    job_id: query.job_id,
    label: query.label,
    signature: query.signature,
  };
  if (HOURS[query.range]) {
    // To the minute: tabs asking for the same range share the api's kept answer.
    const minute = Math.floor((Date.now() - HOURS[query.range] * 3600_000) / 60_000) * 60_000;
    out.since = new Date(minute).toISOString();
  }
  return out;
}

/** ``words``: vocabulary(); ``goVersions``: those the farm has runs of. */
export function fields(words, goVersions) {
  return [
    { name: "scenario", label: "Scenario", options: [["", "all"], ...words.scenarios.map((s) => [s, s])] },
    { name: "go_version", label: "Go version", options: [["", "all"], ...goVersions.map((v) => [v, v])] },
    { name: "job_id", label: "Job", placeholder: "any job (id)" },
    { name: "range", label: "Jobs submitted", options: RANGES },
    { name: "label", label: "Hangs counted", options: [["", "every hang"], ...words.labels.map((l) => [l, l])] },
    { name: "signature", label: "Signature", placeholder: "any signature" },
  ];
}
