// Triad dashboard: polls v1/status on the member that served the page and
// draws it. Everything is built with DOM calls (never innerHTML) so names and
// messages from the cluster are shown as text, not markup.
"use strict";

const POLL_MS = 1500;
const TIMEOUT_MS = 4000;
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let last = null;       // last status received
let failingSince = null; // time of the first failed poll after a success

function el(tag, attrs, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}

const clock = (d) => d.toLocaleTimeString("en-GB", { hour12: false });
const num = (v) => (v === undefined || v === null || v === "" ? "–" : String(v));

function wordClass(w) {
  if (w === "operational") return "operational";
  if (w === "partially operational") return "partially";
  return "not";
}

function renderFacts(s) {
  const offsets = (s.clock_offsets || []).map((o) => {
    const ms = Number(o.offset_ms || 0);
    return el("div", o.skewed ? { class: "skewed" } : {}, `${o.peer} ${ms >= 0 ? "+" : ""}${ms} ms${o.skewed ? " (skewed)" : ""}`);
  });
  const rows = [
    ["Leader", s.leader || "none"],
    ["Term", num(s.term)],
    ["Commit index", num(s.commit_index)],
    ["Applied index", num(s.applied_index)],
    ["Mode", s.mode || "–"],
    ["Served by", `${s.member || "?"}${s.role ? ` (${s.role})` : ""}`],
  ];
  const dl = $("facts");
  dl.replaceChildren();
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  if (offsets.length) dl.append(el("dt", {}, "Clock offsets"), el("dd", {}, ...offsets));
}

// Vertices on a circle, the first at the top: a triangle for three members,
// the centre for a standalone one.
function positions(n) {
  if (n === 1) return [[220, 160]];
  return Array.from({ length: n }, (_, i) => {
    const a = -Math.PI / 2 + (i * 2 * Math.PI) / n;
    return [220 + 150 * Math.cos(a), 210 + 120 * Math.sin(a)];
  });
}

function renderTriangle(s) {
  const svg = $("triangle");
  svg.replaceChildren();
  const members = s.members || [];
  if (!members.length) {
    svg.append(el("svg:text", { x: 220, y: 185, class: "empty" }, "cluster not formed yet"));
    return;
  }
  const pos = new Map(members.map((m, i) => [m.name, positions(members.length)[i]]));
  for (const l of s.links || []) {
    const a = pos.get(l.a), b = pos.get(l.b);
    if (!a || !b) continue;
    const state = ["up", "down"].includes(l.state) ? l.state : "unknown";
    svg.append(el("svg:line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: state,
      "data-link": `${l.a}-${l.b}`, "data-state": state },
      el("svg:title", {}, `${l.a} ↔ ${l.b}: ${state}`)));
  }
  for (const m of members) {
    const [x, y] = pos.get(m.name);
    const role = m.role || "unknown";
    const above = members.length > 1 && y < 210; // labels outside the triangle
    const ty = above ? y - 70 : y + 48;
    const g = el("svg:g", { class: `${role}${m.name === s.member ? " self" : ""}`, "data-member": m.name, "data-role": role });
    g.append(
      el("svg:circle", { cx: x, cy: y, r: 26 }),
      el("svg:text", { x, y, class: "initial" }, (m.name || "?").charAt(0).toUpperCase()),
      el("svg:text", { x, y: ty, class: "name" }, m.name + (m.name === s.member ? " ◂ this page" : "")),
      el("svg:text", { x, y: ty + 18, class: `role ${role}` }, role === "leader" ? "★ leader" : role),
      el("svg:text", { x, y: ty + 34, class: "addr" }, m.address || ""),
    );
    svg.append(g);
  }
}

function renderAlarms(s) {
  const ul = $("alarms");
  ul.replaceChildren();
  const alarms = s.alarms || [];
  if (!alarms.length) {
    ul.append(el("li", { class: "none" }, "no alarms"));
    return;
  }
  for (const a of alarms) {
    const since = Number(a.since_unix_ms) ? ` since ${clock(new Date(Number(a.since_unix_ms)))}` : "";
    ul.append(el("li", {}, el("span", { class: "kind" }, (a.kind || "alarm").replace(/_/g, " ")),
      a.message || "", el("span", { class: "meta" }, `${a.member ? "member " + a.member : (a.subject || "")}${since}`)));
  }
}

function renderFeatures(s) {
  const tb = $("features");
  tb.replaceChildren();
  const feats = s.features || [];
  if (!feats.length) {
    tb.append(el("tr", {}, el("td", { colspan: 5, class: "none" }, "no licensed features")));
    return;
  }
  for (const f of feats) {
    const used = Number(f.in_use || 0), cap = Number(f.capacity || 0);
    const pct = cap ? Math.min(100, (100 * used) / cap) : 0;
    const cls = used >= cap && cap ? "full" : pct >= 80 ? "high" : "";
    tb.append(el("tr", {},
      el("td", {}, f.feature || "?"), el("td", {}, num(f.version)), el("td", {}, `${used} / ${cap}`),
      el("td", {}, el("div", { class: "bar", title: `${Math.round(pct)}%` }, el("span", { class: cls, style: `width:${pct}%` }))),
      poolCell(f)));
  }
}

// poolCell shows a countdown feature's pool use ("3.2 h of 10 h used"), the
// same figures on each of its version rows; "–" for other models. Under 10%
// left is "high" (the countdown_pool_low alarm), used up is "full".
function poolCell(f) {
  if (f.model !== "countdown") return el("td", { class: "pool" }, "–");
  const pool = Number(f.pool_seconds || 0), used = Number(f.pool_used_seconds || 0);
  const left = pool - used;
  const cls = left <= 0 ? "full" : left < pool / 10 ? "high" : "";
  const pct = pool ? Math.min(100, (100 * used) / pool) : 100;
  const h = (s) => String(Math.round((s / 3600) * 10) / 10);
  return el("td", { class: "pool", "data-pool-feature": f.feature || "" },
    `${(used / 3600).toFixed(1)} h of ${h(pool)} h used`,
    el("div", { class: "bar", title: `${Math.round(pct)}% used` }, el("span", { class: cls, style: `width:${pct}%` })));
}

function render(s) {
  const w = $("status-word");
  w.textContent = s.status || "not operational";
  w.className = "word " + wordClass(s.status);
  $("served-by").textContent = `served by ${s.member || "?"}`;
  renderFacts(s);
  renderTriangle(s);
  renderAlarms(s);
  renderFeatures(s);
}

function banner(text, down) {
  const b = $("cutoff-banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = down ? "down" : "";
}

let refreshes = 0; // successful refreshes since the page loaded (data-refreshes on <main>)

async function poll() {
  try {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    const r = await fetch("v1/status", { cache: "no-store", signal: ctl.signal });
    clearTimeout(timer);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    last = await r.json();
    failingSince = null;
    render(last);
    $("main").classList.remove("stale");
    banner(last.isolated ? `This member (${last.member}) reaches neither peer: what it shows may be stale` : "");
    $("updated").textContent = `updated ${clock(new Date())}`;
    $("main").dataset.refreshes = String(++refreshes);
  } catch (e) {
    failingSince = failingSince || new Date();
    banner(`Member not answering since ${clock(failingSince)}`, true);
    if (last) $("main").classList.add("stale");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
