// Live without reloads: one cheap question every few seconds (GET /api/v1/live
// with If-None-Match: 304 while nothing changed); when a part of the farm moved,
// the open page fetches what it shows of it, and nothing else.

import { getIfChanged } from "./api.js";

const EVERY_MS = 2000;
const HIDDEN_EVERY_MS = 10000;

export function watch(onChange, onStatus) {
  let etag = null;
  let parts = null;
  async function tick() {
    try {
      const answer = await getIfChanged("/api/v1/live", etag);
      if (answer.status !== 304) {
        const changed = parts
          ? Object.keys(answer.body.parts).filter((k) => answer.body.parts[k] !== parts[k])
          : [];
        etag = answer.etag;
        parts = answer.body.parts;
        if (changed.length) { await onChange(new Set(changed)); }
      }
      onStatus(null);
    } catch (err) {
      onStatus(err);
    }
    setTimeout(tick, document.hidden ? HIDDEN_EVERY_MS : EVERY_MS);
  }
  tick(); // the first answer is the baseline
}
