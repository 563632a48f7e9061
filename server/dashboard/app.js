// Triad dashboard: polls v1/status on the member that served the page and
// draws it. When that member stops answering, it polls the other members at
// the HTTP addresses the status lists (members[].http_url; their status
// endpoints allow this page's origin by CORS) and says whose view it shows.
// Everything is built with DOM calls (never innerHTML) so names and
// messages from the cluster are shown as text, not markup.
"use strict";

const POLL_MS = 1500;
const TIMEOUT_MS = 4000;
const RETRY_HOME_EVERY = 4;
const MAX_EVENTS = 15; // newest events shown (a member keeps 50) // while failed over, try the serving member first every Nth poll
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let last = null;         // last status received
let failingSince = null; // time the member that served the page stopped answering
let current = "";        // base URL answering now ("" = the member that served the page)
let home = null;         // name of the member that served the page
const memberURLs = new Map(); // member name -> its HTTP base URL, from every status seen

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
      el("svg:text", { x, y: ty, class: "name" }, m.name + (m.name === s.member ? (current ? " ◂ answering" : " ◂ this page") : "")),
      el("svg:text", { x, y: ty + 18, class: `role ${role}` }, role === "leader" ? "★ leader" : role),
      el("svg:text", { x, y: ty + 34, class: "addr" }, m.address || ""),
    );
    svg.append(g);
  }
}

// renderLinks lists the links with "down since" for the down ones.
function renderLinks(s) {
  const ul = $("links");
  ul.replaceChildren();
  for (const l of s.links || []) {
    const state = ["up", "down"].includes(l.state) ? l.state : "unknown";
    const since = Number(l.down_since_unix_ms);
    const text = state === "down" && since ? `down since ${when(since)}` : state;
    ul.append(el("li", { "data-link-row": `${l.a}-${l.b}`, "data-link-state": state },
      `${l.a} – ${l.b}: `, el("span", { class: state }, text)));
  }
}

// renderDashboards links every member's own dashboard.
function renderDashboards() {
  const p = $("dashboards");
  p.replaceChildren();
  if (!memberURLs.size) return;
  p.append("Dashboards: ");
  for (const [name, url] of memberURLs) p.append(el("a", { href: url + "/", "data-member-url": url }, name));
}

// when formats a time in ms: the clock time, with the date if not today.
function when(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? clock(d) : `${d.toLocaleDateString("en-CA")} ${clock(d)}`;
}

const GOOD_EVENTS = new Set(["link_up", "member_up", "quorum_regained", "member_reconnected", "leader_changed"]);

// renderEvents lists the answering member's recent events, newest first.
function renderEvents(s) {
  const ul = $("events");
  ul.replaceChildren();
  $("events-of").textContent = s.member ? `(as ${s.member} saw them)` : "";
  const events = (s.events || []).slice(-MAX_EVENTS).reverse();
  if (!events.length) {
    ul.append(el("li", { class: "none" }, "no events"));
    return;
  }
  for (const e of events) {
    const kind = e.kind || "event";
    ul.append(el("li", { "data-kind": kind, "data-event-member": e.member || "" },
      el("span", { class: "at" }, when(Number(e.at_unix_ms))),
      el("span", { class: `kind${GOOD_EVENTS.has(kind) ? " good" : ""}` }, kind.replace(/_/g, " ")),
      el("span", {}, e.message || "")));
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
  $("served-by").textContent = current ? `served by ${home || "?"}; showing ${s.member || "?"}'s view` : `served by ${s.member || "?"}`;
  renderFacts(s);
  renderTriangle(s);
  renderLinks(s);
  renderDashboards();
  renderAlarms(s);
  renderEvents(s);
  renderFeatures(s);
}

function banner(text, down) {
  const b = $("cutoff-banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = down ? "down" : "";
}

let refreshes = 0; // successful refreshes since the page loaded (data-refreshes on <main>)

// fetchStatus gets v1/status from base ("" = the member that served the
// page, else another member's HTTP base URL, cross-origin without
// credentials).
async function fetchStatus(base) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const r = await fetch(base ? `${base}/v1/status` : "v1/status",
      { cache: "no-store", signal: ctl.signal, mode: base ? "cors" : "same-origin", credentials: "omit" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.json();
  } finally {
    clearTimeout(timer);
  }
}

// remember keeps every member's HTTP base URL ever listed, so the page can
// fail over even when the member now answering does not know one.
function remember(s) {
  for (const m of s.members || []) {
    if (m.name && /^https?:\/\//.test(m.http_url || "")) memberURLs.set(m.name, m.http_url);
  }
}

// candidates: where to ask, in order: the one that answered last, then the
// member that served the page, then the others.
function candidates() {
  const others = [];
  for (const [name, url] of memberURLs) {
    if (name !== home && url !== location.origin) others.push(url);
  }
  const all = ["", ...others];
  let order = [current, ...all.filter((u) => u !== current)];
  if (current && refreshes % RETRY_HOME_EVERY === 0) order = ["", ...order.filter((u) => u !== "")];
  return order;
}

// show draws a status from base and says whose view it is.
function show(s, base) {
  current = base;
  last = s;
  render(s);
  $("main").classList.remove("stale");
  $("main").dataset.viewOf = s.member || "";
  $("main").dataset.failover = current ? "yes" : "no";
  const who = home || "The member that served this page";
  if (!current) {
    banner(s.isolated ? `This member (${s.member}) reaches neither peer: what it shows may be stale` : "");
  } else if (failingSince) {
    banner(`${who} is not answering since ${clock(failingSince)}: showing the view of ${s.member} (${current})`, true);
  } else {
    banner(`${who} reaches neither peer: showing the view of ${s.member} (${current})`, true);
  }
  $("updated").textContent = `updated ${clock(new Date())}`;
  $("main").dataset.refreshes = String(++refreshes);
}

// poll asks the candidates in order and shows the first answer from a
// member that reaches a peer; a member that reaches neither (isolated)
// sees only itself, so the others are asked too and its view is shown only
// when no other member answers.
async function poll() {
  try {
    let cutOff = null; // first isolated answer: [status, base]
    for (const base of candidates()) {
      let s;
      try {
        s = await fetchStatus(base);
      } catch (e) {
        if (base === "" && !failingSince) failingSince = new Date();
        continue;
      }
      if (base === "") {
        home = s.member || home;
        failingSince = null;
      }
      remember(s);
      if (s.isolated) {
        cutOff = cutOff || [s, base];
        continue;
      }
      show(s, base);
      return;
    }
    if (cutOff) {
      show(...cutOff);
      return;
    }
    failingSince = failingSince || new Date();
    banner(`No member answering since ${clock(failingSince)}${memberURLs.size ? "; tried " + [...memberURLs.values()].join(", ") : ""}`, true);
    if (last) $("main").classList.add("stale");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
