// How numbers read on every page: rates, intervals, k/n, sizes, times.

const DASH = "–";

export function pct(x, digits = 1) {
  if (x === null || x === undefined) { return DASH; }
  const p = 100 * x;
  // A rare hang needs more digits than a common one to say anything.
  const d = p !== 0 && p < 1 ? Math.max(digits, 2) : digits;
  return p.toFixed(d) + "%";
}

/** "12.5% to 31.0%": the Wilson 95% interval, as text. */
export function interval(low, high) {
  if (low === null || low === undefined) { return DASH; }
  return `${pct(low)} to ${pct(high)}`;
}

export function kOfN(k, n) { return `${k}/${n}`; }

export function perMillion(x) {
  if (x === null || x === undefined) { return DASH; }
  if (x === 0) { return "0"; }
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(2);
}

export function count(n) {
  if (n === null || n === undefined) { return DASH; }
  return Number(n).toLocaleString("en-US");
}

export function bytes(n) {
  if (n === null || n === undefined) { return DASH; }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) { return DASH; }
  if (seconds < 60) { return seconds.toFixed(seconds < 10 ? 2 : 1) + " s"; }
  const m = Math.floor(seconds / 60);
  if (m < 60) { return `${m} min ${Math.round(seconds % 60)} s`; }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "2026-11-29 17:04:05 UTC": absolute, the same for everyone reading a bug report. */
export function time(iso) {
  if (!iso) { return DASH; }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) { return iso; }
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

/** "12 s ago", "3 h ago". */
export function ago(iso, now = Date.now()) {
  if (!iso) { return DASH; }
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 90) { return `${s} s ago`; }
  if (s < 5400) { return `${Math.round(s / 60)} min ago`; }
  if (s < 172800) { return `${Math.round(s / 3600)} h ago`; }
  return `${Math.round(s / 86400)} days ago`;
}

export function cpus(n) { return n === null || n === undefined ? "all" : String(n); }

/** A key value as a column header reads it. */
export function keyValue(key, value) {
  if (key === "cpus") { return cpus(value) + (value === null ? " CPUs" : value === 1 ? " CPU" : " CPUs"); }
  if (key === "go_version") { return value === null ? DASH : "Go " + value; }
  return value === null || value === undefined ? DASH : String(value);
}

export function short(hex, n = 12) { return hex ? hex.slice(0, n) : DASH; }

/** "1 d", "6 h", "30 min", "45 s": a schedule's period in the largest whole unit. */
export function period(seconds) {
  if (seconds === null || seconds === undefined) { return DASH; }
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size && seconds % size === 0) { return `${seconds / size} ${unit}`; }
  }
  return `${seconds} s`;
}

/** "1 hang", "2 hangs". */
export function plural(n, one, many) { return `${count(n)} ${n === 1 ? one : many}`; }
