// "Download these runs": what a page shows, as CSV or Parquet, from
// GET /api/v1/runs/export with the page's own filters (docs/statistics.md, "The
// data out"). The api wants the bearer token, which a plain link cannot carry, so
// the file is fetched with it and handed to the browser (api.download). The
// browser holds the file until it is saved: for millions of runs, `reprofarm
// export` streams to disk instead.

import * as api from "./api.js";
import { h } from "./components.js";

/** ``filters()``: the api filters the page shows now (asked at each click, so a
 * changed filter is what is downloaded); ``what``: the words after "Download". */
export function exportLinks(filters, what) {
  const status = h("span", { class: "muted status-line", role: "status" });
  const button = (format, label) => h("button", {
    type: "button",
    class: "export",
    dataset: { export: format },
    onclick: async () => {
      const params = { ...filters(), format };
      const name = `${params.job_id ? `runs-job-${params.job_id}` : "runs"}.${format}`;
      status.textContent = `preparing ${name}…`;
      try {
        await api.download("/api/v1/runs/export" + api.query(params), name);
        status.textContent = `${name} downloaded`;
      } catch (err) {
        status.textContent = `export failed: ${err.message}`;
      }
    },
  }, label);
  return h("p", { class: "actions export-links" },
    `Download ${what}:`, button("csv", "CSV"), button("parquet", "Parquet"), status);
}
