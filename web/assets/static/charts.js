// Small hand-drawn SVG charts for the status page: lines with a point per
// observation, stacked bars, horizontal bars. No dependencies, no build.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 260, M = { l: 52, r: 12, t: 12, b: 34 };

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function frame(host, label, h) {
    host.replaceChildren();
    const s = el("svg", { viewBox: `0 0 ${W} ${h || H}`, class: "chart", role: "img", "aria-label": label }, host);
    return s;
  }

  // scale picks a round tick step for values up to v (about four ticks)
  // and the axis maximum, a whole number of steps.
  function scale(v) {
    if (!(v > 0)) return { max: 1, step: 0.25 };
    const raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * p;
    for (const m of [1, 2, 2.5, 5]) if (m * p >= raw) { step = m * p; break; }
    return { max: Math.ceil(v / step - 1e-9) * step, step };
  }
  const niceMax = (v) => scale(v).max;

  function yAxis(s, max, fmt, h) {
    const ih = h - M.t - M.b, step = scale(max).step;
    for (let v = 0, i = 0; v <= max + 1e-9; v += step, i++) {
      const y = M.t + ih - ih * v / max;
      el("line", { x1: M.l, x2: W - M.r, y1: y, y2: y, class: i ? "grid" : "axis" }, s);
      el("text", { x: M.l - 6, y: y + 4, "text-anchor": "end" }, s, fmt(v));
    }
  }

  // lines draws one polyline and a point per observation for each series.
  // opts: series [{name, color, points: [[x, y], ...]}], xFrom, xTo (left
  // and right ends of the x axis), xTicks [{x, label}], markers [{x, label}],
  // yFmt, xTitle, pointTitle(series, point).
  function lines(host, opts) {
    const s = frame(host, opts.label || "line chart");
    const iw = W - M.l - M.r, ih = H - M.t - M.b;
    let ymax = 0;
    for (const se of opts.series) for (const p of se.points) if (p[1] !== null) ymax = Math.max(ymax, p[1]);
    ymax = niceMax(ymax);
    const span = (opts.xTo - opts.xFrom) || 1;
    const X = (x) => M.l + iw * (x - opts.xFrom) / span;
    const Y = (y) => M.t + ih - ih * y / ymax;
    yAxis(s, ymax, opts.yFmt || String, H);
    for (const t of opts.xTicks || []) {
      const x = X(t.x);
      if (x < M.l - 0.5 || x > W - M.r + 0.5) continue;
      el("line", { x1: x, x2: x, y1: M.t + ih, y2: M.t + ih + 4, class: "axis" }, s);
      el("text", { x: x, y: M.t + ih + 16, "text-anchor": "middle" }, s, t.label);
    }
    if (opts.xTitle) el("text", { x: M.l + iw / 2, y: H - 2, "text-anchor": "middle" }, s, opts.xTitle);
    (opts.markers || []).forEach((mk, i) => {
      const x = X(mk.x);
      const line = el("line", { x1: x, x2: x, y1: M.t, y2: M.t + ih, class: "marker" }, s);
      if (mk.title) el("title", {}, line, mk.title);
      el("text", { x: x + 3, y: M.t + 10 + 12 * (i % 3), class: "marker-label" }, s, mk.label);
    });
    opts.series.forEach((se, i) => {
      const g = el("g", { class: "series", "data-series": i, "data-name": se.name }, s);
      const pts = se.points.filter((p) => p[1] !== null);
      if (pts.length > 1) {
        el("polyline", { points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "),
          fill: "none", stroke: se.color, "stroke-width": 1.6 }, g);
      }
      for (const p of pts) {
        const c = el("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.4, fill: se.color, class: "point" }, g);
        if (opts.pointTitle) el("title", {}, c, opts.pointTitle(se, p));
      }
    });
    return s;
  }

  // bars draws stacked bars per category. opts: categories [label],
  // series [{name, color, values}], yFmt, clipFirst (scale to the other
  // categories and cut the first bar, labelled with its total), markers
  // [{category, label, title}] drawn across their category's bar.
  function bars(host, opts) {
    const s = frame(host, opts.label || "bar chart");
    const n = opts.categories.length;
    const iw = W - M.l - M.r, ih = H - M.t - M.b;
    const totals = opts.categories.map((_, c) => opts.series.reduce((a, se) => a + Math.max(0, se.values[c] || 0), 0));
    const scaleFrom = opts.clipFirst && n > 1 ? totals.slice(1) : totals;
    const ymax = niceMax(Math.max(0, ...scaleFrom));
    yAxis(s, ymax, opts.yFmt || String, H);
    const bw = iw / Math.max(n, 1);
    opts.categories.forEach((cat, c) => {
      const x = M.l + c * bw + bw * 0.15, w = bw * 0.7;
      let y0 = M.t + ih;
      for (const se of opts.series) {
        const v = Math.max(0, se.values[c] || 0);
        if (!v) continue;
        const h = Math.min(ih * v / ymax, y0 - M.t);
        if (h <= 0) break;
        const r = el("rect", { x: x.toFixed(1), y: (y0 - h).toFixed(1), width: w.toFixed(1), height: h.toFixed(1),
          fill: se.color, class: "bar" }, s);
        el("title", {}, r, `${se.name}: ${(opts.yFmt || String)(v)} (${cat})`);
        y0 -= h;
      }
      if (totals[c] > ymax) el("text", { x: x + w / 2, y: M.t + 10, "text-anchor": "middle" }, s, "↑ " + (opts.yFmt || String)(totals[c]));
      if (n <= 24 || c % Math.ceil(n / 24) === 0) el("text", { x: x + w / 2, y: M.t + ih + 16, "text-anchor": "middle" }, s, cat);
    });
    (opts.markers || []).forEach((mk, i) => {
      const c = opts.categories.indexOf(mk.category);
      if (c < 0) return;
      const x = M.l + c * bw + bw / 2;
      const line = el("line", { x1: x, x2: x, y1: M.t, y2: M.t + ih, class: "marker" }, s);
      if (mk.title) el("title", {}, line, mk.title);
      el("text", { x: x + 3, y: M.t + 22 + 12 * (i % 3), class: "marker-label" }, s, mk.label);
    });
    if (opts.xTitle) el("text", { x: M.l + iw / 2, y: H - 2, "text-anchor": "middle" }, s, opts.xTitle);
    return s;
  }

  // hbars draws one horizontal bar per item: items [{label, value}].
  function hbars(host, opts) {
    const rowH = 24, h = M.t + opts.items.length * rowH + 8;
    const s = frame(host, opts.label || "bar chart", h);
    const left = 90, iw = W - left - 90;
    const max = Math.max(1, ...opts.items.map((i) => i.value));
    opts.items.forEach((it, i) => {
      const y = M.t + i * rowH;
      el("text", { x: left - 8, y: y + 15, "text-anchor": "end" }, s, it.label);
      el("rect", { x: left, y: y + 4, width: (iw * it.value / max).toFixed(1), height: rowH - 8, fill: it.color || "#1f6feb", class: "bar" }, s);
      el("text", { x: left + iw * it.value / max + 6, y: y + 15 }, s, (opts.fmt || String)(it.value));
    });
    return s;
  }

  window.Charts = { lines, bars, hbars };
})();
