// Triad dashboard charts: usage history drawn as hand-written SVG from the
// members' history endpoints (v1/history/usage, /utilization, /users;
// docs/reports.md). No library, no build step: embedded with the page.
// Data come from the member whose status is shown (app.js's `current`),
// else from the other members in the order app.js tries them, so the
// charts keep working when the member that served the page dies.
// Everything is built with DOM calls (el), never innerHTML.
"use strict";

const CHART_REFRESH_MS = 30000;
// Each period: its span and the step of its points (minute points come
// from the minute window, the others from the hour window).
const RANGES = {
  hour: { span: 3600e3, step: "minute", stepMs: 60e3 },
  day: { span: 86400e3, step: "minute", stepMs: 60e3 },
  week: { span: 7 * 86400e3, step: "hour", stepMs: 3600e3 },
  year: { span: 365 * 86400e3, step: "day", stepMs: 86400e3 },
};
const TOP_N = 10;

const chart = { feature: "", range: "day", by: "user", features: [], timer: null, loading: false, base: null };

// historyJSON gets a v1/history path from the first member that answers:
// the one whose status is shown, then the others.
async function historyJSON(path) {
  const order = typeof candidates === "function" ? candidates() : [""];
  let lastErr = null;
  for (const base of order) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(base ? `${base}/${path}` : path,
        { cache: "no-store", signal: ctl.signal, mode: base ? "cors" : "same-origin", credentials: "omit" });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
        throw new Error(msg);
      }
      const body = await r.json();
      chart.base = base;
      return body;
    } catch (e) {
      lastErr = e;
    } finally {
      clearTimeout(timer);
    }
  }
  throw lastErr || new Error("no member answered");
}

const fmtNum = (v) => (Math.round(v * 100) / 100).toString();
const denialsOf = (p) => Object.values(p.denials || {}).reduce((a, b) => a + Number(b || 0), 0);

function axisLabel(ms, range) {
  const d = new Date(ms);
  if (range === "year") return d.toLocaleDateString("en-CA");
  if (range === "week" || range === "day") return `${d.toLocaleDateString("en-CA")} ${d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}`;
  return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

// drawUsage draws peak (step line), average (area), capacity (dashed step
// line) and denials (red ticks with their count) over [from, to].
function drawUsage(u, range) {
  const svg = $("usage-chart");
  svg.replaceChildren();
  const W = 720, H = 240, L = 44, R = 10, T = 14, B = 26;
  const points = (u.points || []).slice().sort((a, b) => a.t - b.t);
  const from = Number(u.from), to = Number(u.to);
  const stepMs = RANGES[range].stepMs;
  let peakMax = 0, capMax = 0, denials = 0;
  for (const p of points) {
    peakMax = Math.max(peakMax, Number(p.peak || 0));
    capMax = Math.max(capMax, Number(p.capacity || 0));
    denials += denialsOf(p);
  }
  svg.dataset.feature = u.feature || "";
  svg.dataset.range = range;
  svg.dataset.step = u.step || "";
  svg.dataset.points = String(points.length);
  svg.dataset.peak = String(peakMax);
  svg.dataset.capacity = String(capMax);
  svg.dataset.denials = String(denials);
  svg.dataset.source = chart.base || "";
  if (!points.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, class: "empty" }, "no usage recorded in this period"));
    return;
  }
  const yMax = Math.max(1, peakMax, capMax);
  const x = (t) => L + ((Math.min(Math.max(t, from), to) - from) / Math.max(1, to - from)) * (W - L - R);
  const y = (v) => T + (1 - v / yMax) * (H - T - B);
  // Grid and axes.
  for (const v of [0, yMax / 2, yMax]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      el("svg:text", { x: L - 6, y: y(v) + 4, class: "tick y" }, fmtNum(v)));
  }
  svg.append(el("svg:text", { x: L, y: H - 6, class: "tick x start" }, axisLabel(from, range)),
    el("svg:text", { x: W - R, y: H - 6, class: "tick x end" }, axisLabel(to, range)));
  // Average as an area, peak and capacity as step lines: each point holds
  // for its bucket [t, t + step).
  const step = (key) => {
    let d = "";
    for (const p of points) {
      const v = Number(p[key] || 0);
      d += `${d ? "L" : "M"}${x(p.t).toFixed(1)},${y(v).toFixed(1)}H${x(p.t + stepMs).toFixed(1)}`;
    }
    return d;
  };
  const avg = step("average");
  const first = x(points[0].t).toFixed(1);
  svg.append(el("svg:path", { d: `${avg}V${y(0)}H${first}Z`, class: "avg" }));
  svg.append(el("svg:path", { d: step("peak"), class: "peak", "data-series": "peak" }));
  svg.append(el("svg:path", { d: step("capacity"), class: "cap", "data-series": "capacity" }));
  // Denials: a tick at the top of each bucket that had any.
  for (const p of points) {
    const n = denialsOf(p);
    if (!n) continue;
    const cx = x(p.t + stepMs / 2);
    const reasons = Object.entries(p.denials || {}).filter(([, c]) => c > 0).map(([r, c]) => `${c} ${r.replace(/_/g, " ")}`).join(", ");
    svg.append(el("svg:g", { class: "denial", "data-t": String(p.t), "data-denials": String(n) },
      el("svg:line", { x1: cx, x2: cx, y1: T - 6, y2: H - B }),
      el("svg:circle", { cx, cy: T - 6, r: 4 }),
      el("svg:title", {}, `${when(p.t)}: ${n} denied (${reasons})`)));
  }
}

// drawUtilization draws one bar per seat count k: the share of the period
// with exactly k seats in use.
function drawUtilization(u) {
  const svg = $("util-chart");
  svg.replaceChildren();
  const W = 360, H = 200, L = 34, R = 8, T = 16, B = 26;
  const buckets = (u.buckets || []).slice().sort((a, b) => a.seats - b.seats);
  svg.dataset.feature = u.feature || "";
  svg.dataset.capacity = String(Number(u.capacity || 0));
  svg.dataset.buckets = String(buckets.length);
  if (!buckets.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, class: "empty" }, "no usage recorded"));
    return;
  }
  const bw = (W - L - R) / buckets.length;
  const y = (v) => T + (1 - v) * (H - T - B);
  for (const v of [0, 0.5, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      el("svg:text", { x: L - 4, y: y(v) + 4, class: "tick y" }, `${v * 100}%`));
  }
  buckets.forEach((b, i) => {
    const share = Math.max(0, Math.min(1, Number(b.share || 0)));
    const x0 = L + i * bw + bw * 0.12, w = bw * 0.76;
    const over = Number(u.capacity) > 0 && b.seats > Number(u.capacity);
    svg.append(el("svg:g", { class: `bar${over ? " over" : ""}`, "data-seats": String(b.seats), "data-share": String(share) },
      el("svg:rect", { x: x0, y: y(share), width: w, height: Math.max(0, y(0) - y(share)) }),
      el("svg:text", { x: x0 + w / 2, y: H - 8, class: "tick x" }, String(b.seats)),
      share > 0 ? el("svg:text", { x: x0 + w / 2, y: y(share) - 3, class: "val" }, `${Math.round(share * 100)}%`) : "",
      el("svg:title", {}, `${b.seats} seat(s) in use ${fmtNum(share * 100)}% of the time`)));
  });
}

// drawTop lists the top users (hosts, groups) by usage hours.
function drawTop(u) {
  const ol = $("top-users");
  ol.replaceChildren();
  $("top-title").textContent = `Top ${u.by || chart.by}s by hours`;
  ol.dataset.by = u.by || chart.by;
  const rows = (u.rows || []).slice(0, TOP_N);
  if (!rows.length) {
    ol.append(el("li", { class: "none" }, "no usage recorded"));
    return;
  }
  const maxH = Math.max(...rows.map((r) => Number(r.hours || 0)), 1e-9);
  for (const r of rows) {
    const h = Number(r.hours || 0);
    ol.append(el("li", { "data-name": r.name || "", "data-hours": String(h) },
      el("span", { class: "who" }, r.name || "(none)"),
      el("span", { class: "hours" }, `${fmtNum(h)} h`),
      el("div", { class: "bar" }, el("span", { style: `width:${(100 * h) / maxH}%` }))));
  }
}

function featureList() {
  const names = new Set();
  for (const f of (last && last.features) || []) if (f.feature) names.add(f.feature);
  return [...names].sort();
}

function syncFeatures() {
  const names = featureList();
  if (names.join("\n") === chart.features.join("\n")) return false;
  chart.features = names;
  const sel = $("chart-feature");
  sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (!names.includes(chart.feature)) chart.feature = names[0] || "";
  sel.value = chart.feature;
  return true;
}

// refreshCharts fetches the three views for the chosen feature and period.
async function refreshCharts() {
  clearTimeout(chart.timer);
  chart.timer = setTimeout(refreshCharts, CHART_REFRESH_MS);
  syncFeatures();
  const sec = $("history");
  if (!chart.feature) {
    $("chart-note").textContent = last ? "no licensed features" : "waiting for the cluster…";
    return;
  }
  if (chart.loading) return;
  chart.loading = true;
  const r = RANGES[chart.range];
  const to = Date.now();
  const from = to - r.span;
  const q = `feature=${encodeURIComponent(chart.feature)}&from=${from}&to=${to}`;
  try {
    const [usage, util, users] = await Promise.all([
      historyJSON(`v1/history/usage?${q}&step=${r.step}`),
      historyJSON(`v1/history/utilization?${q}`),
      historyJSON(`v1/history/users?${q}&by=${chart.by}&top=${TOP_N}`),
    ]);
    drawUsage(usage, chart.range);
    drawUtilization(util);
    drawTop(users);
    sec.dataset.loaded = String(Number(sec.dataset.loaded || 0) + 1);
    sec.classList.remove("failed");
    $("chart-note").textContent = chart.base ? `from ${chart.base}` : "";
  } catch (e) {
    sec.classList.add("failed");
    $("chart-note").textContent = `history unavailable: ${e.message}`;
  } finally {
    chart.loading = false;
  }
}

function setupCharts() {
  for (const b of document.querySelectorAll("#chart-ranges button")) {
    b.addEventListener("click", () => {
      chart.range = b.dataset.range;
      for (const o of document.querySelectorAll("#chart-ranges button")) o.classList.toggle("on", o === b);
      refreshCharts();
    });
  }
  $("chart-feature").addEventListener("change", (e) => { chart.feature = e.target.value; refreshCharts(); });
  $("chart-by").addEventListener("change", (e) => { chart.by = e.target.value; refreshCharts(); });
  // Options in the page's URL (#feature=cad&range=week&by=host) choose
  // the first view, so a view can be bookmarked.
  const h = new URLSearchParams(location.hash.slice(1));
  if (RANGES[h.get("range")]) {
    chart.range = h.get("range");
    for (const o of document.querySelectorAll("#chart-ranges button")) o.classList.toggle("on", o.dataset.range === chart.range);
  }
  if (["user", "host", "group"].includes(h.get("by"))) chart.by = $("chart-by").value = h.get("by");
  if (h.get("feature")) chart.feature = h.get("feature");
  // Draw as soon as the first status names the features, then every 30 s.
  const wait = setInterval(() => {
    if (last) {
      clearInterval(wait);
      refreshCharts();
    }
  }, 200);
}

setupCharts();
