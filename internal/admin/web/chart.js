// chart.js: modelgate's own small SVG line charts. No dependencies.
//
//   lineChart({title, width, series: [{name, color, points: [[ms, value|null], ...], dash, step}],
//              yFormat, yMax, xMin, xMax, height})
//
// returns an element holding the title, an SVG (one path per series, gaps
// where a value is null) and a legend. Values at null are missing data,
// not zero. Give the width of the box it goes in (in CSS pixels), so that
// text keeps its size on a phone; the SVG still shrinks with its box.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// niceStep returns a round tick step (1, 2 or 5 times a power of ten)
// giving about n ticks over span.
function niceStep(span, n) {
  if (!(span > 0)) return 1;
  const raw = span / n;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / pow;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * pow;
}

function pad2(n) { return String(n).padStart(2, "0"); }

export function clock(ms, withSeconds) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + (withSeconds ? ":" + pad2(d.getSeconds()) : "");
}

export function lineChart(opts) {
  const W = Math.max(260, Math.round(opts.width || 600)), H = opts.height || 180;
  const M = { l: 48, r: 10, t: 10, b: 22 };
  const series = opts.series || [];
  const fmt = opts.yFormat || ((v) => String(v));

  let xMin = opts.xMin, xMax = opts.xMax, yMax = 0;
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (xMin === undefined || x < xMin) xMin = x;
      if (xMax === undefined || x > xMax) xMax = x;
      if (y !== null && y !== undefined && y > yMax) yMax = y;
    }
  }
  if (opts.yMax !== undefined) yMax = Math.max(yMax, opts.yMax);
  if (opts.yFixed !== undefined) yMax = opts.yFixed;
  if (!(yMax > 0)) yMax = 1;
  if (xMin === undefined) { xMin = Date.now() - 60000; xMax = Date.now(); }
  if (xMax <= xMin) xMax = xMin + 1000;
  const yStep = niceStep(yMax, 4);
  yMax = Math.ceil(yMax / yStep) * yStep;

  const px = (x) => M.l + ((x - xMin) / (xMax - xMin)) * (W - M.l - M.r);
  const py = (y) => H - M.b - (y / yMax) * (H - M.t - M.b);

  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    width: W, height: H, "aria-label": opts.title || "chart" });

  // Horizontal grid and y labels.
  for (let y = 0; y <= yMax + yStep / 2; y += yStep) {
    root.append(svg("line", { x1: M.l, x2: W - M.r, y1: py(y), y2: py(y), class: "grid" }));
    const t = svg("text", { x: M.l - 6, y: py(y) + 4, class: "axis", "text-anchor": "end" });
    t.textContent = fmt(y);
    root.append(t);
  }
  // Time ticks on the x axis.
  const span = xMax - xMin;
  const steps = [5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3];
  const maxTicks = Math.max(2, Math.floor((W - M.l - M.r) / 90));
  const xStep = steps.find((s) => span / s <= maxTicks) || 3600e3;
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax; x += xStep) {
    root.append(svg("line", { x1: px(x), x2: px(x), y1: M.t, y2: H - M.b, class: "grid" }));
    if (px(x) + 26 > W || px(x) - 26 < M.l - 10) continue; // the label would be cut off
    const t = svg("text", { x: px(x), y: H - 6, class: "axis", "text-anchor": "middle" });
    t.textContent = clock(x, xStep < 60e3);
    root.append(t);
  }

  for (const s of series) {
    let d = "", open = false, last = null;
    for (const [x, y] of s.points) {
      if (y === null || y === undefined) { open = false; continue; }
      if (s.step && open && last !== null) d += `L${px(x).toFixed(1)},${py(last).toFixed(1)}`;
      d += `${open ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
      open = true; last = y;
    }
    if (s.step && open && last !== null && opts.xMax !== undefined) d += `L${px(xMax).toFixed(1)},${py(last).toFixed(1)}`;
    const path = svg("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 2,
      "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" });
    if (s.dash) path.setAttribute("stroke-dasharray", "6 4");
    path.dataset.series = s.name;
    root.append(path);
    // A lone point (no neighbour to draw a line to) still shows as a dot.
    const defined = s.points.filter(([, y]) => y !== null && y !== undefined);
    if (defined.length === 1) {
      root.append(svg("circle", { cx: px(defined[0][0]), cy: py(defined[0][1]), r: 3, fill: s.color }));
    }
  }

  const box = document.createElement("figure");
  box.className = "chart-box";
  if (opts.title) {
    const cap = document.createElement("figcaption");
    cap.textContent = opts.title;
    box.append(cap);
  }
  box.append(root);
  if (series.length > 1 || opts.legend) {
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of series) {
      const item = document.createElement("span");
      const key = document.createElement("i");
      key.style.background = s.color;
      if (s.dash) key.className = "dash";
      item.append(key, document.createTextNode(s.name));
      legend.append(item);
    }
    box.append(legend);
  }
  return box;
}
