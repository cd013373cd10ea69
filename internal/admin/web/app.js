// app.js: the modelgate dashboard. Plain JavaScript, no dependencies.
//
// The token (the admin token or the read-only one) is kept in
// sessionStorage (this tab only) and sent as "Authorization: Bearer" on
// every call; the event stream is read with fetch() so that it carries the
// header too. The token never goes into a URL. Every piece of data is put
// on the page as text (textContent), never as HTML.

import { lineChart, clock } from "./chart.js";

const TOKEN_KEY = "modelgate.token";
const REPLICA_KEY = "modelgate.replica";
// Deployment colours, in config order: distinguishable for the common
// colour-vision deficiencies and readable on light and dark backgrounds.
// A deployment named after a colour never takes one of these: see colours.
const PALETTE = ["#2f6fd0", "#d55e00", "#009e73", "#b05fa6", "#c49a00", "#56a0d3"];
// The colour of a deployment named after a colour ("red", "green-2"): a
// shade of it readable on light and dark backgrounds. Other CSS colour
// names ("crimson", "navy") are drawn in their CSS colour, kept readable.
const NAMED = {
  red: "#d62728", green: "#2e9e44", blue: "#2f6fd0", orange: "#e07000", yellow: "#c49a00", gold: "#c49a00",
  purple: "#8e4fc2", violet: "#8e4fc2", magenta: "#c2188f", pink: "#d6589b", brown: "#8c5a2b", teal: "#00897b",
  cyan: "#0e9bb5", aqua: "#0e9bb5", grey: "#7d8590", gray: "#7d8590", black: "#444c56", white: "#aab3bd",
  silver: "#98a1ab", navy: "#2a4b9b", lime: "#5aa800", olive: "#7f7f00", maroon: "#9b2335",
};
const REFRESH_MS = 4000;
const ENDED = new Set(["succeeded", "rolled_back", "aborted", "undone"]);

const $ = (sel) => document.querySelector(sel);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  gen: 0, // bumped whenever the page changes: stale work checks it and stops
  timers: [],
  aborts: [],
  redraw: null,
  // What the token may do, from GET /api/v1/token: kind is "admin",
  // "read-only" or "" (not known: the buttons stay enabled and a refused
  // write says why); validUntil (ms) is set for a token replaced on the
  // daemon that is still accepted for its overlap.
  kind: "",
  validUntil: null,
  tokenInfoBusy: false,
  // Whose numbers the metrics, charts and shadow report show: "" for the
  // whole fleet (every replica's requests, merged by the replica this
  // page talks to), or one replica's id (?replica=).
  replica: sessionStorage.getItem(REPLICA_KEY) || "",
};

const READ_ONLY = "read-only";
// Why the rollout buttons are disabled with the read-only token.
const READ_ONLY_ACTIONS = "this token may only read; pausing, resuming, promoting or aborting a rollout needs the admin token";

// ---------- small DOM helpers ----------

// h builds an element: h("td", {class: "num"}, "12", child, ...). Strings
// become text nodes; null and false are skipped.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const pct = (x, digits = 1) => (x === null || x === undefined ? "–" : (x * 100).toFixed(digits) + "%");
const ms = (x) => (x === null || x === undefined ? "–" : x < 10 ? x.toFixed(2) + " ms" : x < 100 ? x.toFixed(1) + " ms" : Math.round(x) + " ms");
const num = (x) => (x === null || x === undefined ? "–" : Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en") : (+x.toFixed(2)).toString());
const time = (s) => (s ? clock(Date.parse(s), true) : "–");

function weightsText(weights, order) {
  const names = order.filter((n) => weights && weights[n]);
  return names.length ? names.map((n) => `${n} ${weights[n]}%`).join(" · ") : "none";
}

// colours gives each deployment of ep its colour, so that no colour
// contradicts a name: a deployment named after a colour ("red", or a
// first word such as "green-v2") is drawn in that colour; the others take
// the palette's colours in config order, skipping any within 40° of hue of
// a named deployment's colour (no "v2" in green beside a "red" in red) and
// any taken already.
function colours(ep) {
  const c = {};
  const names = (ep.deployments || []).map((d) => d.name);
  const hues = [];
  for (const n of names) {
    const named = colourOfName(n);
    if (!named) continue;
    c[n] = named;
    const [hue, sat] = hsl(named);
    if (sat > 0.2) hues.push(hue);
  }
  const free = PALETTE.filter((p) => !Object.values(c).includes(p) &&
    hues.every((hu) => Math.min(Math.abs(hu - hsl(p)[0]), 360 - Math.abs(hu - hsl(p)[0])) >= 40));
  let i = 0;
  for (const n of names) {
    if (c[n]) continue;
    // More deployments than free colours: greys, darker each time.
    c[n] = i < free.length ? free[i] : `hsl(210, 8%, ${Math.max(25, 60 - 8 * (i - free.length))}%)`;
    i++;
  }
  return c;
}

// colourOfName is the colour a deployment's name says (the whole name or
// its first word), or "" when it names none.
function colourOfName(name) {
  const words = name.toLowerCase().split(/[^a-z]+/).filter(Boolean);
  for (const w of [name.toLowerCase(), ...words.slice(0, 1)]) {
    if (NAMED[w]) return NAMED[w];
    const css = cssColour(w);
    if (css) return css;
  }
  return "";
}

// cssColour is a CSS colour name's colour as #rrggbb, its lightness kept
// within what reads on a light and a dark background; "" for a word that
// is not a colour name.
let paint = null;
function cssColour(word) {
  if (!/^[a-z]{3,20}$/.test(word) || word === "transparent" || word === "currentcolor") return "";
  paint = paint || document.createElement("canvas").getContext("2d");
  paint.fillStyle = "#000001";
  paint.fillStyle = word;
  const v = paint.fillStyle;
  if (v === "#000001" || !/^#[0-9a-f]{6}$/.test(v)) return "";
  const [hue, sat, light] = hsl(v);
  const l = Math.min(0.6, Math.max(0.3, light));
  return l === light ? v : hex(hue, sat, l);
}

// hex writes a colour given as hue (degrees), saturation and lightness
// (0..1) as #rrggbb.
function hex(hue, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))).toString(16).padStart(2, "0");
  };
  return "#" + f(0) + f(8) + f(4);
}

// hsl reads #rrggbb as [hue in degrees, saturation 0..1, lightness 0..1].
function hsl(hex) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return [0, 0, 0.5];
  const [r, g, b] = m.slice(1).map((x) => parseInt(x, 16) / 255);
  const max = Math.max(r, g, b), min = Math.min(r, g, b), l = (max + min) / 2, d = max - min;
  if (d === 0) return [0, 0, l];
  const s = d / (1 - Math.abs(2 * l - 1));
  let hue = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  hue *= 60;
  return [hue < 0 ? hue + 360 : hue, s, l];
}

function swatch(colour) {
  const s = h("span", { class: "swatch" });
  s.style.background = colour;
  return s;
}

// shareBar draws a horizontal bar split by fractions 0..1 per deployment.
function shareBar(parts, colour, label) {
  const bar = h("div", { class: "sharebar", role: "img", "aria-label": label });
  for (const [name, frac] of parts) {
    if (!(frac > 0)) continue;
    const seg = h("span", { title: `${name} ${pct(frac)}` });
    seg.style.width = (frac * 100).toFixed(2) + "%";
    seg.style.background = colour[name] || "#888";
    bar.append(seg);
  }
  return bar;
}

function badge(text, kind) {
  return h("span", { class: "badge " + (kind || text) }, text.replace("_", " "));
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body, token) {
  const headers = { Authorization: "Bearer " + (token || state.token) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.trim() }; }
  if (res.status === 401 && !token) {
    signOut("The daemon refused the token (" + ((data && data.error) || "401") + "). Sign in again.");
  }
  // A token replaced on the daemon (SIGHUP) while this tab holds it is
  // still accepted for a while, with a Warning: ask until when.
  if (res.ok && !token && state.validUntil === null && /\bmodelgate\b.*\breplaced\b/.test(res.headers.get("Warning") || "")) {
    loadTokenInfo();
  }
  if (!token) showDegraded(res.headers.get("X-Modelgate-Degraded"));
  if (res.status === 404 && !token && state.replica && data && /^no replica /.test(data.error || "")) {
    // The replica chosen has left the fleet: back to the whole fleet.
    pickReplica("");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  // Metrics, series and shadow answers say which replicas they hold
  // (GET /api/v1/replicas's "replicas" is the list itself).
  if (!token && data && data.replicas && !Array.isArray(data.replicas)) showCoverage(data.replicas);
  return data;
}

// ---------- the fleet's replicas ----------

// fleetQuery is the query part that asks the metrics, series and shadow
// routes for the replica chosen ("" for the whole fleet); sep is "?" or "&".
const fleetQuery = (sep) => (state.replica ? `${sep}replica=${encodeURIComponent(state.replica)}` : "");

// showCoverage says when a fleet-wide answer lacks a replica that did not
// answer in time: its numbers are left out, not counted as zero.
function showCoverage(c) {
  const line = $("#replicas-line");
  const partial = c.reporting < c.of;
  line.hidden = !partial;
  line.textContent = !partial ? ""
    : `Showing ${c.reporting} of ${c.of} replicas: ` +
      (c.missing || []).map((m) => `${m.id} did not answer (${m.error})`).join("; ") + ". Their requests are not in these numbers.";
}

// loadReplicas fills the replica picker from GET /api/v1/replicas. It is
// shown when the fleet has more than one replica (or one is chosen).
async function loadReplicas() {
  let list;
  try {
    ({ replicas: list } = await call("GET", "/api/v1/replicas"));
  } catch {
    return; // an older daemon, or a 401 that signed out
  }
  list = list || [];
  if (state.replica && !list.some((r) => r.id === state.replica)) {
    pickReplica("");
    return;
  }
  const sel = $("#replica");
  const options = [h("option", { value: "" }, `the whole fleet (${list.length} ${list.length === 1 ? "replica" : "replicas"})`),
    ...list.map((r) => h("option", { value: r.id },
      r.id + (r.self ? " (this one)" : "") + (r.leader ? " (leader)" : "")))];
  sel.replaceChildren(...options);
  sel.value = state.replica;
  $("#replica-pick").hidden = list.length < 2 && !state.replica;
}

// pickReplica shows the pages for one replica ("" for the fleet).
function pickReplica(id) {
  if (id === state.replica) return;
  state.replica = id;
  if (id) sessionStorage.setItem(REPLICA_KEY, id);
  else sessionStorage.removeItem(REPLICA_KEY);
  $("#replica").value = id;
  route();
}

// showDegraded shows why the gateway serves degraded (its state store does
// not answer: it routes what it last knew and refuses changes), or hides
// the line once an answer comes without the header.
function showDegraded(why) {
  const line = $("#degraded");
  line.hidden = !why;
  line.textContent = why ? "This gateway is degraded: " + why + "." : "";
}

// get calls GET; endpoints come back with traffic and mirror always set.
const get = async (path) => {
  const data = await call("GET", path);
  const fix = (ep) => { if (ep && ep.deployments) { ep.traffic = ep.traffic || {}; ep.mirror = ep.mirror || {}; } };
  fix(data);
  (data && data.endpoints || []).forEach(fix);
  return data;
};
const enc = encodeURIComponent;

// ---------- the token's kind ----------

// loadTokenInfo asks the daemon what the token may do (GET /api/v1/token)
// and shows it in the top bar. When the answer cannot be had (an older
// daemon), the kind stays unknown.
async function loadTokenInfo(token) {
  const background = !token; // with the token in use, not one being tried
  if (background && state.tokenInfoBusy) return;
  const asked = token || state.token;
  let info = null;
  if (background) state.tokenInfoBusy = true;
  try {
    info = await call("GET", "/api/v1/token", undefined, token);
  } catch {
    // A 401 has signed out already; otherwise what was known stays.
  } finally {
    if (background) state.tokenInfoBusy = false;
  }
  if (!info || (background && asked !== state.token)) return;
  state.kind = info.kind || "";
  state.validUntil = info.valid_until ? Date.parse(info.valid_until) : null;
  showToken();
}

// showToken shows the token's kind beside "Log out": a quiet "admin", a
// visible "read-only", and a warning line for a replaced token.
function showToken() {
  const kind = $("#token-kind");
  const warn = $("#token-warning");
  const signedIn = !!state.token;
  kind.hidden = !signedIn || !state.kind;
  kind.dataset.kind = state.kind;
  kind.className = "badge token " + (state.kind === READ_ONLY ? READ_ONLY : "quiet");
  kind.textContent = state.kind;
  kind.title = state.kind === READ_ONLY ? READ_ONLY_ACTIONS
    : state.kind === "admin" ? "the admin token: it may read and change the gateway" : "";
  warn.hidden = !signedIn || state.validUntil === null;
  warn.textContent = state.validUntil === null ? ""
    : `This token was replaced on the daemon and stops working at ${new Date(state.validUntil).toLocaleString()}; sign in with the new one.`;
}

// ---------- sign in and out ----------

function showLogin(message) {
  $("#login").hidden = false;
  $("#nav").hidden = true;
  $("#replica-pick").hidden = true;
  $("#replicas-line").hidden = true;
  $("#logout").hidden = true;
  $("#live").hidden = true;
  showToken();
  $("#app").replaceChildren();
  const err = $("#login-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("#token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  state.kind = "";
  state.validUntil = null;
  showDegraded(null);
  stopPage();
  showLogin(message);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#token");
  const token = input.value.trim();
  const err = $("#login-error");
  err.hidden = true;
  try {
    await call("GET", "/api/v1/endpoints", undefined, token);
  } catch (e) {
    err.textContent = e instanceof ApiError && e.status === 401
      ? "That token was refused: " + e.message + "."
      : "Could not reach the daemon: " + e.message;
    err.hidden = false;
    input.select();
    return;
  }
  // Which kind of token it is decides which buttons work: known before
  // the first page is drawn.
  state.kind = "";
  state.validUntil = null;
  await loadTokenInfo(token);
  input.value = "";
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  showToken();
  route();
}

// ---------- page lifecycle ----------

function stopPage() {
  state.gen++;
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.aborts.forEach((a) => a.abort());
  state.aborts = [];
  state.redraw = null;
  $("#live").hidden = true;
}

function every(gen, fn, ms) {
  const t = setInterval(() => { if (gen === state.gen) fn(); }, ms);
  state.timers.push(t);
}

function route() {
  stopPage();
  if (!state.token) { showLogin(""); return; }
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  const app = $("#app");
  app.replaceChildren();
  $("#replicas-line").hidden = true;
  loadReplicas();
  every(state.gen, loadReplicas, 15000);
  const parts = (location.hash.replace(/^#\/?/, "") || "").split("/").filter(Boolean).map(decodeURIComponent);
  const gen = state.gen;
  const navEp = $("#nav-endpoint");
  navEp.replaceChildren();
  if (parts[0] === "endpoints" && parts[1]) {
    const ep = parts[1], sub = parts[2] || "";
    const link = (href, text, cur) => h("a", { href, class: cur ? "current" : null }, text);
    navEp.append(
      link(`#/endpoints/${enc(ep)}`, ep, sub === ""), " ",
      link(`#/endpoints/${enc(ep)}/rollout`, "Rollout", sub === "rollout"), " ",
      link(`#/endpoints/${enc(ep)}/shadow`, "Shadow", sub === "shadow"));
    if (sub === "rollout") return rolloutPage(gen, app, ep);
    if (sub === "shadow") return shadowPage(gen, app, ep);
    return endpointPage(gen, app, ep);
  }
  return overviewPage(gen, app);
}

// guard runs a page's refresh, showing an error in place of the data when
// it fails (a 401 has already signed out).
async function guard(gen, box, fn) {
  try {
    await fn();
    box.querySelector(":scope > .load-error")?.remove();
  } catch (e) {
    if (gen !== state.gen || (e instanceof ApiError && e.status === 401)) return;
    let err = box.querySelector(":scope > .load-error");
    if (!err) { err = h("p", { class: "error load-error", role: "alert" }); box.prepend(err); }
    err.textContent = "Could not load: " + e.message;
  }
}

// ---------- overview ----------

// PAGE_SIZE is how many endpoints the overview shows at once: only those
// are read in detail (four calls each), so that a gateway with a thousand
// endpoints stays quick to look at.
const PAGE_SIZE = 20;

// The overview's search and page, kept while the tab lives.
const overviewView = { query: sessionStorage.getItem("modelgate.search") || "", page: 0 };

// matching is the endpoints whose name contains the query, case ignored.
function matching(endpoints, query) {
  const q = query.trim().toLowerCase();
  return q ? endpoints.filter((ep) => ep.name.toLowerCase().includes(q)) : endpoints;
}

function overviewPage(gen, app) {
  const list = h("div", { id: "endpoints" });
  const search = h("input", { id: "endpoint-search", type: "search", placeholder: "Search endpoints", "aria-label": "Search endpoints", value: overviewView.query });
  const pager = h("div", { id: "pager", class: "small pager" });
  app.append(h("h1", {}, "Endpoints"), h("p", { class: "muted small" },
    "From the requests ", state.replica ? `replica ${state.replica} served` : "served",
    `: the measured share over the last ${RECENT_S} seconds at the split of now (since the split changed, when that is more recent);`,
    " requests, errors and p99 over the last minute. Refreshes every few seconds."),
    h("div", { class: "toolbar" }, search, pager), list);
  let all = [];
  let drawn = 0; // the latest draw: an older one still reading is dropped
  // draw shows the current page of the endpoints matching the search, each
  // read in detail; the list of all endpoints is read by refresh.
  const draw = () => guard(gen, app, async () => {
    const seq = ++drawn;
    const shown = matching(all, overviewView.query);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    overviewView.page = Math.min(overviewView.page, pages - 1);
    const first = overviewView.page * PAGE_SIZE;
    const page = shown.slice(first, first + PAGE_SIZE);
    const details = await Promise.all(page.map(async (ep) => {
      const [metrics, series, ro, health] = await Promise.all([
        get(`/api/v1/endpoints/${enc(ep.name)}/metrics?window=1m${fleetQuery("&")}`),
        get(`/api/v1/endpoints/${enc(ep.name)}/series?window=1m&step=1s${fleetQuery("&")}`).catch((e) => { if (e.status === 404) return null; throw e; }),
        get(`/api/v1/endpoints/${enc(ep.name)}/rollout`).catch((e) => { if (e.status === 404) return null; throw e; }),
        get(`/api/v1/endpoints/${enc(ep.name)}/health`).catch((e) => { if (e.status === 404) return null; throw e; }),
      ]);
      return { ep, metrics, recent: series ? recentShare(series, ep) : null, ro, health };
    }));
    if (gen !== state.gen || seq !== drawn) return;
    pager.replaceChildren(...pagerParts(first, page.length, shown.length, all.length, pages, draw));
    if (!all.length) {
      list.replaceChildren(h("p", { class: "notice" }, "No endpoints yet: declare some in the config file and apply it."));
      return;
    }
    if (!shown.length) {
      list.replaceChildren(h("p", { class: "notice", id: "no-match" }, `No endpoint name contains "${overviewView.query.trim()}".`));
      return;
    }
    list.replaceChildren(...details.map(endpointCard));
  });
  const refresh = () => guard(gen, app, async () => {
    ({ endpoints: all } = await get("/api/v1/endpoints"));
    if (gen !== state.gen) return;
    await draw();
  });
  search.addEventListener("input", () => {
    overviewView.query = search.value;
    overviewView.page = 0;
    sessionStorage.setItem("modelgate.search", search.value);
    draw();
  });
  state.redraw = refresh;
  refresh();
  every(gen, refresh, REFRESH_MS);
}

// pagerParts says which endpoints the page shows and moves between pages.
function pagerParts(first, count, matched, total, pages, draw) {
  const what = matched === total
    ? `${total.toLocaleString("en")} endpoint${total === 1 ? "" : "s"}`
    : `${matched.toLocaleString("en")} of ${total.toLocaleString("en")} endpoints match`;
  const text = h("span", { dataset: { field: "range" } },
    count ? `${(first + 1).toLocaleString("en")}–${(first + count).toLocaleString("en")} of ${what}` : what);
  if (pages <= 1) return [text];
  const go = (d) => () => { overviewView.page += d; draw(); };
  return [
    h("button", { type: "button", id: "prev-page", disabled: overviewView.page === 0 ? "" : null, onclick: go(-1) }, "‹ Previous"),
    text,
    h("button", { type: "button", id: "next-page", disabled: overviewView.page >= pages - 1 ? "" : null, onclick: go(1) }, "Next ›"),
  ];
}

// healthBadge marks a deployment with backends down (this gateway's view,
// GET .../health): "no healthy backend" when none may take a request,
// "k of n down" otherwise; each backend and its last error in the title.
function healthBadge(health, name) {
  const d = health && health.deployments.find((x) => x.name === name);
  const down = d ? d.backends.filter((b) => !b.healthy) : [];
  if (!down.length) return null;
  const text = d.healthy ? `${down.length} of ${d.backends.length} down` : "no healthy backend";
  const el = badge(text, "fail");
  el.dataset.field = "health";
  el.title = down.map((b) => `${b.url} down${b.last_error ? ": " + b.last_error : ""}`).join("\n") +
    (d.healthy ? "" : "\nevery request routed to it is answered 503");
  return el;
}

// RECENT_S is how many of the last seconds the overview's measured share
// covers: long enough to hold a few hundred requests at modest traffic,
// short enough that a split changed a moment ago (a rollback) does not
// look like requests still routed the old way.
const RECENT_S = 10;

// recentShare is each deployment's measured share of the split-routed
// requests over the last RECENT_S complete seconds of a 1-second series,
// counting only the seconds since the split last changed (the seconds
// whose configured share is the split of now, ep.traffic, for every
// deployment). Each second weighs by its requests. It returns
// {share: {name: 0..1}, seconds, since (ms: the first second counted),
// requests}; seconds is 0 when the split changed within the last second.
function recentShare(series, ep) {
  const order = series.order || [];
  const n = (series.times || []).length;
  const same = (i) => order.every((d) =>
    Math.abs(series.deployments[d].configured_share[i] - (ep.traffic[d] || 0) / 100) < 1e-4);
  let from = n;
  while (from > 0 && n - from < RECENT_S && same(from - 1)) from--;
  const share = {};
  let total = 0;
  for (let i = from; i < n; i++) {
    const reqs = order.reduce((a, d) => a + series.deployments[d].requests[i], 0);
    if (!reqs) continue;
    total += reqs;
    for (const d of order) share[d] = (share[d] || 0) + (series.deployments[d].measured_share[i] || 0) * reqs;
  }
  for (const d of order) share[d] = total ? (share[d] || 0) / total : null;
  return { share, seconds: n - from, since: from < n ? Date.parse(series.times[from]) : null,
    changed: from > 0 && n - from < RECENT_S, requests: total };
}

// recentWords says what the measured share covers.
function recentWords(r) {
  if (!r) return "measured: the last minute (this daemon has no per-second series)";
  if (!r.seconds) return "measured: – (the split changed within the last second)";
  return r.changed
    ? `measured: since the split changed at ${clock(r.since, true)} (${r.seconds} s, ${r.requests.toLocaleString("en")} requests)`
    : `measured: the last ${r.seconds} s (${r.requests.toLocaleString("en")} requests)`;
}

function endpointCard({ ep, metrics, recent, ro, health }) {
  const col = colours(ep);
  const order = ep.deployments.map((d) => d.name);
  const base = `#/endpoints/${enc(ep.name)}`;
  const running = ro && !ENDED.has(ro.phase);
  // The measured share: of the last seconds (recent), or of the last
  // minute from an older daemon without the series.
  const measured = (name) => {
    if (recent) return recent.share[name];
    const m = metrics.deployments[name] || {};
    return m.requests ? m.share : null;
  };
  const rows = order.map((name) => {
    const m = metrics.deployments[name] || {};
    const conf = (ep.traffic[name] || 0) / 100;
    const hb = healthBadge(health, name);
    // The rollout's roles while it runs; an ended one has none.
    const role = running && name === ro.canary ? "canary" : running && name === ro.stable ? "stable" : "";
    return h("tr", { dataset: { deployment: name } },
      h("td", {}, swatch(col[name]), name, role ? h("span", { class: "muted small", dataset: { field: "role" } }, " " + role) : null,
        hb ? " " : null, hb),
      h("td", { class: "num", dataset: { field: "configured" } }, pct(conf)),
      h("td", { class: "num", dataset: { field: "measured" } }, measured(name) === null || measured(name) === undefined ? "–" : pct(measured(name))),
      h("td", { class: "num" }, num(m.rpm)),
      h("td", { class: "num" }, m.requests ? pct(m.error_rate, 2) : "–"),
      h("td", { class: "num" }, m.requests ? ms(m.latency_ms.p99) : "–"));
  });
  const confParts = order.map((n) => [n, (ep.traffic[n] || 0) / 100]);
  const measParts = order.map((n) => [n, measured(n) || 0]);
  const mirror = Object.entries(ep.mirror || {});
  return h("section", { class: "panel", dataset: { endpoint: ep.name } },
    h("div", { class: "panel-head" },
      h("h2", {}, h("a", { href: base }, ep.name)),
      ro ? h("a", { href: base + "/rollout" }, badge(ro.phase), " ", ro.id) : null,
      h("span", { class: "links" },
        h("a", { href: base }, "Charts"), h("a", { href: base + "/rollout" }, "Rollout"), h("a", { href: base + "/shadow" }, "Shadow"))),
    h("div", { class: "table-wrap" },
      h("table", {},
        h("thead", {}, h("tr", {},
          h("th", {}, "Deployment"), h("th", { class: "num" }, "Configured"), h("th", { class: "num", title: `share of the split-routed requests over the last ${RECENT_S} s at the split of now` }, "Measured"),
          h("th", { class: "num" }, "Req/min"), h("th", { class: "num" }, "Errors"), h("th", { class: "num" }, "p99"))),
        h("tbody", {}, rows))),
    h("div", { style: null, class: "small" },
      h("div", { class: "sharelabel" }, "configured"), shareBar(confParts, col, "configured traffic share"),
      h("div", { class: "sharelabel", dataset: { field: "measured-window" } }, recentWords(recent)), shareBar(measParts, col, "measured traffic share")),
    mirror.length ? h("p", { class: "small muted" }, "Mirror: ", mirror.map(([n, p]) => `${n} ${p}%`).join(", ")) : null,
    running ? h("p", { class: "small" }, "Rollout ", ro.id, ": ", ro.reason) : null);
}

// ---------- one endpoint: charts ----------

const RANGES = {
  "1h": { window: "1h", step: "30s", label: "Last hour" },
  "10m": { window: "10m", step: "5s", label: "Last 10 minutes" },
  "2m": { window: "2m", step: "1s", label: "Last 2 minutes" },
};

function endpointPage(gen, app, name) {
  let range = sessionStorage.getItem("modelgate.range") || "1h";
  if (!RANGES[range]) range = "1h";
  const head = h("div");
  const seg = h("div", { class: "seg", role: "group", "aria-label": "time range" });
  const charts = h("div", { id: "charts" });
  const setRange = (r) => { range = r; sessionStorage.setItem("modelgate.range", r); drawSeg(); refresh(); };
  const drawSeg = () => seg.replaceChildren(...Object.entries(RANGES).map(([k, v]) =>
    h("button", { type: "button", "aria-pressed": String(k === range), dataset: { range: k }, onclick: () => setRange(k) }, v.label)));
  drawSeg();
  app.append(head, h("div", { class: "toolbar" }, seg, h("span", { class: "muted small" }, "live: refreshes every few seconds")), charts);

  const refresh = () => guard(gen, app, async () => {
    const r = RANGES[range];
    const [ep, series, ro, health] = await Promise.all([
      get(`/api/v1/endpoints/${enc(name)}`),
      get(`/api/v1/endpoints/${enc(name)}/series?window=${r.window}&step=${r.step}${fleetQuery("&")}`),
      get(`/api/v1/endpoints/${enc(name)}/rollout`).catch((e) => { if (e.status === 404) return null; throw e; }),
      get(`/api/v1/endpoints/${enc(name)}/health`).catch((e) => { if (e.status === 404) return null; throw e; }),
    ]);
    if (gen !== state.gen) return;
    const col = colours(ep);
    const order = series.order;
    head.replaceChildren(
      h("div", { class: "panel-head" }, h("h1", {}, name),
        ro ? h("a", { href: `#/endpoints/${enc(name)}/rollout` }, badge(ro.phase), " ", ro.id) : null),
      h("p", { id: "traffic-now" }, h("strong", {}, "Traffic: "), weightsText(ep.traffic, order),
        Object.keys(ep.mirror || {}).length ? h("span", { class: "muted" }, " · mirror ", weightsText(ep.mirror, order)) : null),
      shareBar(order.map((n) => [n, (ep.traffic[n] || 0) / 100]), col, "configured traffic share"));

    const xs = series.times.map((t) => Date.parse(t) + series.step_seconds * 500); // middle of each step
    const xMin = Date.parse(series.start), xMax = Date.parse(series.end);
    const perMin = 60 / series.step_seconds;
    const width = (el) => Math.max(260, (el.clientWidth || app.clientWidth || 600) - 2);
    const wide = width(charts);
    const cell = order.length ? Math.min(wide, wide >= 900 ? (wide - 32) / 3 : wide >= 600 ? (wide - 16) / 2 : wide) : wide;

    const share = h("section", { class: "panel" }, h("h2", {}, "Traffic share"),
      lineChart({
        title: "configured (dashed) and measured (solid), percent of split requests", width: wide - 32, height: 170, xMin, xMax,
        yFixed: 100, yFormat: (v) => v + "%", legend: true,
        series: order.flatMap((n) => {
          const d = series.deployments[n];
          return [
            { name: n + " configured", color: col[n], dash: true, step: true, points: xs.map((x, i) => [x, d.configured_share[i] * 100]) },
            { name: n + " measured", color: col[n], points: xs.map((x, i) => [x, d.measured_share[i] === null ? null : d.measured_share[i] * 100]) },
          ];
        }),
      }));
    const panels = order.map((n) => {
      const d = series.deployments[n];
      const total = d.requests.reduce((a, b) => a + b, 0), errs = d.errors.reduce((a, b) => a + b, 0);
      return h("section", { class: "panel", dataset: { deployment: n } },
        h("div", { class: "panel-head" }, h("h3", {}, swatch(col[n]), n), healthBadge(health, n),
          h("span", { class: "muted small" }, `${total.toLocaleString("en")} requests, ${errs.toLocaleString("en")} errors in the ${r.label.toLowerCase()}`)),
        h("div", { class: "grid-3" },
          lineChart({ title: "requests per minute", width: cell, height: 150, xMin, xMax,
            series: [{ name: n, color: col[n], points: xs.map((x, i) => [x, d.requests[i] * perMin]) }], yFormat: num }),
          lineChart({ title: "errors per minute (5xx)", width: cell, height: 150, xMin, xMax,
            series: [{ name: "errors", color: "#c0392b", points: xs.map((x, i) => [x, d.errors[i] * perMin]) }], yFormat: num }),
          lineChart({ title: "latency p50 and p99 (ms)", width: cell, height: 150, xMin, xMax, legend: true,
            series: [
              { name: "p50", color: col[n], points: xs.map((x, i) => [x, d.latency_p50_ms[i]]) },
              { name: "p99", color: col[n], dash: true, points: xs.map((x, i) => [x, d.latency_p99_ms[i]]) },
            ], yFormat: num })));
    });
    charts.replaceChildren(share, ...panels);
    charts.dataset.window = series.window;
  });
  state.redraw = refresh;
  refresh();
  every(gen, refresh, REFRESH_MS);
}

// ---------- shadow report ----------

function shadowPage(gen, app, name) {
  let win = "5m";
  const seg = h("div", { class: "seg", role: "group", "aria-label": "window" });
  const body = h("div", { id: "shadow" });
  const drawSeg = () => seg.replaceChildren(...["5m", "1h"].map((w) =>
    h("button", { type: "button", "aria-pressed": String(w === win), onclick: () => { win = w; drawSeg(); refresh(); } }, "Last " + w)));
  drawSeg();
  app.append(h("h1", {}, name, ": shadow report"), h("div", { class: "toolbar" }, seg), body);

  const refresh = () => guard(gen, app, async () => {
    const [rep, ro] = await Promise.all([
      get(`/api/v1/endpoints/${enc(name)}/shadow?window=${win}${fleetQuery("&")}`).catch((e) => { if (e.status === 404) return null; throw e; }),
      get(`/api/v1/endpoints/${enc(name)}/rollout`).catch((e) => { if (e.status === 404) return null; throw e; }),
    ]);
    if (gen !== state.gen) return;
    const shadows = rep ? Object.entries(rep.shadows || {}) : [];
    if (!shadows.length) {
      body.replaceChildren(h("p", { class: "notice", id: "no-shadow" }, "No shadow data",
        rep ? ` in the last ${win}: no deployment of ${name} receives mirrored copies.` : ": this daemon has no shadow report for this endpoint."));
      return;
    }
    body.replaceChildren(...shadows.map(([dep, s]) => shadowCard(dep, s, matchThreshold(ro, dep))));
  });
  state.redraw = refresh;
  refresh();
  every(gen, refresh, REFRESH_MS);
}

// matchThreshold is the lowest match rate the running rollout asks of
// dep, its canary: the shadow phase's min_match_rate while in it, or a
// match_rate gate's min in a live stage. Null when nothing judges dep's
// match rate now.
function matchThreshold(ro, dep) {
  if (!ro || ENDED.has(ro.phase) || ro.canary !== dep) return null;
  if (ro.stage === -1 && ro.plan.shadow) {
    const min = ro.plan.shadow.min_match_rate || 0.95;
    return { min, what: `the shadow phase of ${ro.id} needs a match rate of ${pct(min, 2)} or more over ${num(ro.plan.shadow.min_compared || 200)} compared copies` };
  }
  const gate = (ro.plan.gates || []).find((g) => g.type === "match_rate");
  return gate ? { min: gate.min, what: `the match_rate gate of ${ro.id} needs a match rate of ${pct(gate.min, 2)} or more` } : null;
}

function shadowCard(dep, s, threshold) {
  const ci = s.match_rate_ci95;
  const ciBar = h("div", { class: "ci", role: "img", "aria-label": (ci ? `95% interval ${pct(ci[0])} to ${pct(ci[1])}` : "no interval yet") +
    (threshold ? `, threshold ${pct(threshold.min)}` : "") });
  if (ci) {
    const span = h("span");
    span.style.left = (ci[0] * 100).toFixed(2) + "%";
    span.style.width = ((ci[1] - ci[0]) * 100).toFixed(2) + "%";
    const mark = h("b");
    mark.style.left = "calc(" + (s.match_rate * 100).toFixed(2) + "% - 1px)";
    ciBar.append(span, mark);
  }
  if (threshold) {
    // The threshold: a dashed line across the bar, where the rate must be.
    const line = h("i", { class: "threshold", title: `threshold ${pct(threshold.min, 2)}` });
    line.style.left = "calc(" + (threshold.min * 100).toFixed(2) + "% - 1px)";
    ciBar.append(line);
  }
  const counts = ["mirrored", "sent", "compared", "matched", "mismatched", "not_compared", "errors", "timeouts", "dropped", "skipped"];
  const q = ["p50", "p90", "p95", "p99"];
  const lat = s.latency_ms || { shadow: {}, live: {} };
  return h("section", { class: "panel", dataset: { shadow: dep } },
    h("div", { class: "panel-head" }, h("h2", {}, dep), badge(s.active ? "active" : "inactive", s.active ? "pass" : "inconclusive"),
      s.protocol ? h("span", { class: "muted small" }, "compared as ", s.protocol) : null),
    h("div", { class: "grid-2" },
      h("div", {},
        h("h3", {}, "Match rate"),
        h("div", { class: "big", id: "match-rate" }, pct(s.match_rate, 2)),
        ciBar,
        h("p", { class: "small muted" }, ci ? `95% interval ${pct(ci[0], 2)} – ${pct(ci[1], 2)} over ${num(s.compared + s.errors + s.timeouts)} copies` : "no compared copies yet"),
        threshold ? h("p", { class: "small", dataset: { field: "threshold" } }, h("span", { class: "threshold-key" }), `threshold: ${threshold.what}`) : null,
        h("dl", { class: "kv small" }, counts.flatMap((k) => [h("dt", {}, k.replace("_", " ")), h("dd", {}, num(s[k] || 0))]))),
      h("div", {},
        h("h3", {}, "Latency on the same requests"),
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "shadow"), h("th", { class: "num" }, "live"), h("th", { class: "num" }, "difference"))),
          h("tbody", {}, q.map((k) => {
            const a = (lat.shadow || {})[k], b = (lat.live || {})[k];
            return h("tr", {}, h("th", {}, k), h("td", { class: "num" }, ms(a)), h("td", { class: "num" }, ms(b)),
              h("td", { class: "num" }, b ? (a >= b ? "+" : "") + ((a - b) / b * 100).toFixed(1) + "%" : "–"));
          })))))),
    h("h3", { class: "spaced" }, `Mismatches (${(s.mismatches || []).length} latest)`),
    mismatchList(s.mismatches || []),
    s.last_error ? h("p", { class: "small error" }, "Last failed copy ", time(s.last_error.time), ": ", s.last_error.error) : null);
}

// mismatchList shows the newest mismatches, each with the request that gave
// it (when compare.sample_requests keeps it) and the live and shadow values
// side by side: five, and the rest behind "more".
function mismatchList(list) {
  if (!list.length) return h("p", { class: "muted small" }, "None in this window.");
  const item = (m) => h("div", { class: "mismatch" },
    h("div", { class: "small" }, h("span", { class: "mono" }, time(m.time)), " · ", h("span", { class: "mono" }, m.request_id || "no request id"),
      m.path ? [" · at ", h("code", {}, m.path)] : null),
    h("div", {}, m.reason),
    m.request ? h("div", { class: "request" }, h("div", { class: "sharelabel" }, "request"), h("pre", {}, m.request)) : null,
    h("div", { class: "side" },
      h("div", {}, h("div", { class: "sharelabel" }, "live"), h("pre", {}, m.live)),
      h("div", {}, h("div", { class: "sharelabel" }, "shadow"), h("pre", {}, m.shadow))));
  const first = list.slice(0, 5).map(item);
  if (list.length <= 5) return first;
  return [...first, h("details", { class: "evidence" }, h("summary", {}, `${list.length - 5} more`), list.slice(5).map(item))];
}

// ---------- rollout ----------

// The rollout's actions. None is drawn as the page's primary action (a
// filled button): a rollout moves on its own. Skipping its gates
// (promote-full) is drawn as a caution, taking traffic away from a
// deployment (abort, undo) as a danger.
const ACTIONS = [
  { name: "pause", when: (p) => p === "shadow" || p === "progressing" || p === "final_bake" },
  { name: "resume", when: (p) => p === "paused" },
  { name: "promote", when: (p) => !ENDED.has(p) },
  { name: "promote-full", when: (p) => !ENDED.has(p), confirm: "Give the canary 100% of the traffic now, skipping the remaining stages and their gates?", caution: true },
  { name: "abort", when: (p) => !ENDED.has(p), confirm: "Abort the rollout and send all traffic back to the stable now?", danger: true },
  { name: "retry", when: (p) => p === "aborted" || p === "rolled_back" },
  { name: "undo", when: (p) => p === "succeeded", confirm: "Give the old stable all traffic back at once?", danger: true },
];

function confirmDialog(title, text) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    // The close event is queued, not fired at once: the close of an earlier
    // confirmation can arrive after this one opened. It is ignored while
    // this dialog is still open, or it would answer "no" for it.
    const onClose = () => {
      if (dlg.open) return;
      dlg.removeEventListener("close", onClose);
      resolve(dlg.returnValue === "yes");
    };
    dlg.addEventListener("close", onClose);
    dlg.returnValue = "";
    dlg.showModal();
    $("#confirm-no").focus();
  });
}

function rolloutPage(gen, app, name) {
  const statusBody = h("div");
  // The buttons stay the same elements across refreshes (only enabled or
  // not), so that one is never replaced under a finger or a pointer.
  const buttons = ACTIONS.map((a) => h("button", {
    type: "button", class: a.danger ? "danger" : a.caution ? "caution" : "quiet", dataset: { action: a.name },
    disabled: true, onclick: () => act(a.name),
  }, a.name));
  const readOnlyNote = h("p", { class: "small muted", id: "read-only-note", hidden: true },
    "Signed in with the read-only token: it may only read. Pausing, resuming, promoting or aborting a rollout needs the admin token (admin.token_file).");
  const status = h("section", { class: "panel", id: "rollout", hidden: true }, statusBody, h("div", { class: "actions" }, buttons), readOnlyNote);
  const none = h("div");
  const weights = h("section", { class: "panel" }, h("h2", {}, "Weights over time"));
  const gates = h("section", { class: "panel" }, h("h2", {}, "Gates"));
  const logList = h("ol", { class: "events", id: "event-log", reversed: true });
  const log = h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Event log"),
    h("span", { class: "muted small", id: "stream-state" }, "connecting…")), logList);
  const result = h("p", { id: "action-result", role: "status", hidden: true });
  app.append(h("h1", {}, name, ": rollout"), none, status, result, weights, gates, log);

  let events = [];       // this endpoint's events, oldest first
  let ep = null, ro = null;
  const openGates = new Set();

  const drawWeights = () => {
    const chart = weightsChart(ro, ep, events, weights.clientWidth - 32);
    weights.replaceChildren(h("h2", {}, "Weights over time"), chart);
  };

  const refresh = () => guard(gen, app, async () => {
    const [e, r] = await Promise.all([
      get(`/api/v1/endpoints/${enc(name)}`),
      get(`/api/v1/endpoints/${enc(name)}/rollout`).catch((err) => { if (err.status === 404) return null; throw err; }),
    ]);
    if (gen !== state.gen) return;
    ep = e; ro = r;
    if (!ro) {
      none.replaceChildren(h("p", { class: "notice", id: "no-rollout" }, `No rollout has run on ${name} yet. Start one with `,
        h("code", {}, `modelgate rollout start ${name} --canary DEPLOYMENT`), "."));
      status.hidden = weights.hidden = gates.hidden = true;
      return;
    }
    none.replaceChildren();
    status.hidden = weights.hidden = gates.hidden = false;
    status.dataset.phase = ro.phase;
    // replaceChildren would write a null as the text "null".
    statusBody.replaceChildren(...rolloutStatus(ro, ep, events).filter((x) => x !== null && x !== undefined && x !== false));
    // The read-only token may not act: the buttons say so rather than
    // be refused (the daemon would answer 403 anyway).
    const readOnly = state.kind === READ_ONLY;
    ACTIONS.forEach((a, i) => {
      buttons[i].disabled = readOnly || !a.when(ro.phase);
      if (readOnly) buttons[i].title = `The read-only token may only read: ${a.name} changes the gateway and needs the admin token (admin.token_file); sign in with it to act.`;
      else buttons[i].removeAttribute("title");
    });
    readOnlyNote.hidden = !readOnly;
    gates.replaceChildren(h("h2", {}, "Gates"), gatesTable(ro, openGates));
    drawWeights();
  });

  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(refresh, 150); };

  async function act(action) {
    const a = ACTIONS.find((x) => x.name === action);
    if (a.confirm && !(await confirmDialog(action + "?", a.confirm))) return;
    result.hidden = false;
    result.className = "muted";
    result.textContent = action + "…";
    try {
      const after = await call("POST", `/api/v1/endpoints/${enc(name)}/rollout/${action}`);
      if (gen !== state.gen) return;
      result.className = "notice";
      result.textContent = `${action}: rollout ${after.id} is ${after.phase.replace("_", " ")}: ${after.reason}`;
    } catch (e) {
      if (gen !== state.gen) return;
      result.className = "error";
      result.textContent = `${action} refused: ${e.message}`;
    }
    refresh();
  }

  const addEvent = (e, fresh) => {
    if (events.length && e.seq <= events[events.length - 1].seq) return;
    events.push(e);
    const li = h("li", { class: fresh ? "new" : null, dataset: { seq: e.seq, type: e.type } },
      h("span", { class: "mono" }, time(e.time)), h("span", { class: "type" }, e.type), h("span", { class: "msg" }, e.message));
    logList.prepend(li);
    while (logList.children.length > 200) logList.lastChild.remove();
    if (fresh && (e.type.startsWith("rollout.") || e.type === "traffic.changed")) soon();
  };

  (async () => {
    await guard(gen, app, async () => {
      const { events: past } = await get(`/api/v1/events?endpoint=${enc(name)}`);
      if (gen !== state.gen) return;
      past.forEach((e) => addEvent(e, false));
    });
    await refresh();
    const since = events.length ? events[events.length - 1].seq : 0;
    streamEvents(gen, name, since, (e) => addEvent(e, true), (up) => {
      $("#live").hidden = !up;
      const s = document.getElementById("stream-state");
      if (s) s.textContent = up ? "live" : "reconnecting…";
    });
  })();
  state.redraw = refresh;
  every(gen, refresh, REFRESH_MS);
}

// rolloutStatus builds the status panel's content (its buttons are kept
// by the page).
function rolloutStatus(ro, ep, events) {
  const col = colours(ep);
  const order = ep.deployments.map((d) => d.name);
  const stages = ro.plan.stages || [];
  const ended = ENDED.has(ro.phase);
  const stageStart = {};
  for (const e of events) {
    if (e.type === "rollout.stage" && e.data && e.data.rollout === ro.id) stageStart[e.data.stage] = e.time;
  }
  const items = [];
  if (ro.plan.shadow) {
    const cls = ro.stage === -1 && !ended ? "current" : ro.stage >= 0 ? "done" : ro.phase === "rolled_back" ? "failed" : "";
    items.push(h("li", { class: cls, dataset: { stage: -1 } }, h("div", { class: "w" }, "shadow"),
      h("div", { class: "small muted" }, `${ro.plan.shadow.mirror}% mirrored`)));
  }
  stages.forEach((s, i) => {
    let cls = "";
    if (ro.phase === "succeeded" || i < ro.stage) cls = "done";
    else if (i === ro.stage) cls = ended ? (ro.phase === "rolled_back" || ro.phase === "aborted" ? "failed" : "done") : "current";
    const bake = parseDur(s.bake || ro.plan.bake);
    const li = h("li", { class: cls, dataset: { stage: i } }, h("div", { class: "w" }, `${s.weight}%`),
      h("div", { class: "small muted" }, `stage ${i + 1}/${stages.length}`),
      stageStart[i] ? h("div", { class: "small muted" }, "from ", time(stageStart[i])) : null);
    if (cls === "current" && bake > 0) {
      const done = Math.min(1, parseDur(ro.baked) / bake);
      const bar = h("span");
      bar.style.width = (done * 100).toFixed(1) + "%";
      li.append(h("div", { class: "progress", title: `baked ${ro.baked} of ${s.bake || ro.plan.bake}` }, bar));
    }
    items.push(li);
  });
  const stageText = ro.stage < 0 ? "shadow phase" : `stage ${ro.stage + 1}/${stages.length} at ${stages[ro.stage] ? stages[ro.stage].weight : 100}%`;
  return [
    h("div", { class: "panel-head" }, h("h2", {}, ro.id), h("span", { id: "rollout-phase", dataset: { phase: ro.phase } }, badge(ro.phase)),
      h("span", {}, swatch(col[ro.stable]), ro.stable, " → ", swatch(col[ro.canary]), ro.canary)),
    h("p", { id: "rollout-reason" }, ro.reason),
    ro.estimate ? h("p", { id: "rollout-estimate", class: "small muted" }, "Expected when it started: ", ro.estimate.summary) : null,
    ro.estimate && ro.estimate.warnings && !ended ? h("ul", { id: "rollout-warnings", class: "warnings" },
      ro.estimate.warnings.map((w) => h("li", {}, "⚠ ", w))) : null,
    h("ol", { class: "timeline", "aria-label": "stages" }, items),
    h("dl", { class: "kv" },
      h("dt", {}, "stage"), h("dd", { id: "rollout-stage" }, ended ? "ended at " + stageText : stageText),
      h("dt", {}, "traffic now"), h("dd", { id: "traffic-now" }, weightsText(ep.traffic, order)),
      !ended ? [h("dt", {}, "baked"), h("dd", { id: "rollout-baked" }, `${secs(parseDur(ro.baked))} of ${secs(parseDur((stages[ro.stage] && stages[ro.stage].bake) || ro.plan.bake))}`)] : null,
      deadlineItems(ro),
      h("dt", {}, "started"), h("dd", {}, new Date(ro.started_at).toLocaleString()),
      ro.finished_at ? [h("dt", {}, "finished"), h("dd", {}, new Date(ro.finished_at).toLocaleString())] : null),
    shareBar(order.map((n) => [n, (ep.traffic[n] || 0) / 100]), col, "traffic now"),
  ];
}

// deadlineItems are the rollout's deadlines as dt/dd pairs: the stage's
// progress deadline (from its start or the last resume; in canary
// requests too with progress_deadline_requests) and the whole rollout's
// timeout. Both stand still or vanish as the daemon's do: the progress
// deadline does not run while paused, and neither is left once it ended.
function deadlineItems(ro) {
  if (ENDED.has(ro.phase)) return null;
  const plan = ro.plan;
  const limit = parseDur(plan.progress_deadline), reqs = plan.progress_deadline_requests || 0;
  const action = plan.on_deadline === "rollback" ? "it rolls back" : "it pauses";
  const out = [];
  if (ro.phase === "paused" && (limit > 0 || reqs > 0)) {
    out.push(h("dt", {}, "deadline"), h("dd", { id: "rollout-deadline" }, "stands still while paused: resume gives the stage another ",
      [limit > 0 ? secs(limit) : null, reqs > 0 ? `${reqs.toLocaleString("en")} canary requests` : null].filter(Boolean).join(" or ")));
  } else if ((ro.phase === "shadow" || ro.phase === "progressing") && (limit > 0 || reqs > 0)) {
    const parts = [];
    let at = null;
    if (limit > 0) {
      at = Date.parse(ro.deadline_from && !ro.deadline_from.startsWith("0001-") ? ro.deadline_from : ro.stage_started) + limit * 1000;
      parts.push(`at ${clock(at, true)} (in ${secs(Math.max(0, (at - Date.now()) / 1000))}, ${secs(limit)} from the stage's start or last resume)`);
    }
    if (reqs > 0 && ro.stage >= 0) {
      const done = Math.max(0, (ro.stage_requests || 0) - (ro.deadline_requests_from || 0));
      parts.push(`after ${reqs.toLocaleString("en")} canary requests (${done.toLocaleString("en")} so far)`);
    }
    if (parts.length) {
      out.push(h("dt", {}, "deadline"), h("dd", { id: "rollout-deadline", dataset: { at: at === null ? null : new Date(at).toISOString() } },
        `without a decision ${action} `, parts.join(" or "), ro.awaiting_confirmation ? " (the confirm-promotion webhook is waited for meanwhile)" : ""));
    }
  }
  const timeout = parseDur(plan.timeout);
  if (timeout > 0) {
    const at = Date.parse(ro.started_at) + timeout * 1000;
    out.push(h("dt", {}, "timeout"), h("dd", { id: "rollout-timeout", dataset: { at: new Date(at).toISOString() } },
      ro.timed_out ? `passed at ${clock(at, true)}: the rollout was paused, and is not timed out again`
        : `${plan.on_timeout === "pause" ? "it pauses" : "it rolls back"} at ${clock(at, true)} (in ${secs(Math.max(0, (at - Date.now()) / 1000))}, ${secs(timeout)} from its start, pauses included)`));
  }
  return out.length ? out : null;
}

// secs writes seconds as 0.7s, 12s, 2m05s or 1h02m.
function secs(x) {
  if (x < 10) return x.toFixed(1).replace(/\.0$/, "") + "s";
  if (x < 60) return Math.round(x) + "s";
  const m = Math.floor(x / 60), r = Math.round(x % 60);
  if (m < 60) return m + "m" + String(r).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
}

// parseDur reads a Go duration ("1m30s", "699.5ms") in seconds.
function parseDur(s) {
  if (!s) return 0;
  let total = 0;
  const re = /([\d.]+)(ns|us|µs|ms|s|m|h)/g;
  const unit = { ns: 1e-9, us: 1e-6, "µs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let m;
  while ((m = re.exec(s))) total += parseFloat(m[1]) * unit[m[2]];
  return total;
}

// weightsChart draws the stable's and canary's configured weight since the
// rollout started, from the traffic.changed events of the log.
function weightsChart(ro, ep, events, width) {
  const col = colours(ep);
  const start = Date.parse(ro.started_at);
  const end = ro.finished_at ? Date.parse(ro.finished_at) + 5000 : Date.now();
  const changes = events.filter((e) => e.type === "traffic.changed" && Date.parse(e.time) >= start - 2000 && e.data);
  const before = changes.length ? changes[0].data.from || {} : ep.traffic;
  const pts = (dep) => {
    const p = [[start - 2000, +(before[dep] || 0)]];
    for (const e of changes) p.push([Date.parse(e.time), +((e.data.to || {})[dep] || 0)]);
    return p;
  };
  return lineChart({
    title: "configured traffic, percent", width, height: 170, xMin: start - 2000, xMax: Math.max(end, start + 10000),
    yFixed: 100, yFormat: (v) => v + "%", legend: true,
    series: [
      { name: ro.stable + " (stable)", color: col[ro.stable], step: true, points: pts(ro.stable) },
      { name: ro.canary + " (canary)", color: col[ro.canary], step: true, points: pts(ro.canary) },
    ],
  });
}

function gatesTable(ro, open) {
  const gates = ro.gates || [];
  if (!gates.length) return h("p", { class: "muted" }, "No verdicts in this stage yet.");
  return h("div", { class: "table-wrap" }, h("table", { id: "gates" },
    h("thead", {}, h("tr", {}, h("th", {}, "Gate"), h("th", {}, "Verdict"), h("th", {}, "What it says, then the statistics"))),
    h("tbody", {}, gates.map((g, i) => {
      const key = g.gate + "#" + i;
      const det = h("details", { class: "evidence", open: open.has(key) },
        h("summary", {}, "evidence"), h("dl", { class: "kv" }, flatten(g.evidence || {}).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
      det.addEventListener("toggle", () => { det.open ? open.add(key) : open.delete(key); });
      return h("tr", { dataset: { gate: g.gate, verdict: g.verdict } },
        h("td", {}, g.gate), h("td", {}, badge(g.verdict)),
        h("td", {}, g.summary ? h("div", { class: "gate-summary" }, g.summary) : null, h("div", { class: "gate-reason small" }, g.reason), det));
    }))));
}

function flatten(obj, prefix = "") {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) out.push(...flatten(v, key));
    else out.push([key, typeof v === "number" ? String(+v.toPrecision(6)) : Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

// ---------- the event stream, read with fetch() ----------

// streamEvents follows /api/v1/events/stream for one endpoint with the
// bearer header (EventSource cannot send it), resuming after the last seq
// seen with Last-Event-ID whenever the connection drops.
async function streamEvents(gen, endpoint, since, onEvent, onState) {
  let last = since;
  while (gen === state.gen) {
    const ctrl = new AbortController();
    state.aborts.push(ctrl);
    try {
      const res = await fetch(`/api/v1/events/stream?endpoint=${enc(endpoint)}`, {
        headers: { Authorization: "Bearer " + state.token, "Last-Event-ID": String(last), Accept: "text/event-stream" },
        signal: ctrl.signal, cache: "no-store", credentials: "omit",
      });
      if (res.status === 401) { signOut("The daemon refused the token. Sign in again."); return; }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      onState(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (!data) continue; // a comment: ": keep-alive"
          const ev = JSON.parse(data);
          if (ev.seq > last) last = ev.seq;
          if (gen === state.gen) onEvent(ev);
        }
      }
    } catch (e) {
      // aborted (page left) or dropped: fall through and maybe retry
    }
    if (gen !== state.gen) return;
    onState(false);
    await new Promise((r) => setTimeout(r, 1500));
  }
}

// ---------- start ----------

$("#login-form").addEventListener("submit", signIn);
$("#logout").addEventListener("click", () => signOut(""));
$("#replica").addEventListener("change", (ev) => pickReplica(ev.target.value));
window.addEventListener("hashchange", route);
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (state.redraw) state.redraw(); }, 200);
});
// A token kept from before (a reload of the tab): learn its kind first.
if (state.token) loadTokenInfo().then(() => { if (state.token) route(); });
else route();
