/* Switchboard dashboard: small inline-SVG charts (time series as lines or stacked bars), no dependencies. */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  /* Round, readable axis ticks from 0 to at least `max`. */
  function niceTicks(max, count) {
    if (!(max > 0)) return [0, 1];
    const raw = max / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = 0; v <= max + step * 0.001; v += step) ticks.push(v);
    if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function timeLabel(t, span) {
    const d = new Date(t * 1000);
    if (span > 2 * 86400) return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " +
      d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  /*
   * Draw a time-series chart into `container`.
   * opts: {times: [unix s], step: s, series: [{name, color, values: [number|null]}], kind: "line"|"bars",
   *        format: (v) => string, height: px, label: string}
   * "bars" stacks the series; "line" draws each series as a line (gaps where a value is null).
   */
  function timeChart(container, opts) {
    container.textContent = "";
    const width = Math.max(320, container.clientWidth || 600);
    const height = opts.height || 180;
    const m = { l: 56, r: 12, t: 10, b: 24 };
    const iw = width - m.l - m.r, ih = height - m.t - m.b;
    const n = opts.times.length;
    const stacked = opts.kind === "bars";
    let max = 0;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const s of opts.series) {
        const v = s.values[i] || 0;
        if (stacked) sum += v; else max = Math.max(max, v);
      }
      if (stacked) max = Math.max(max, sum);
    }
    const ticks = niceTicks(max, 4);
    const top = ticks[ticks.length - 1] || 1;
    const x = (i) => m.l + (n <= 1 ? iw / 2 : (i + 0.5) * (iw / n));
    const y = (v) => m.t + ih - (v / top) * ih;
    const fmt = opts.format || ((v) => String(v));

    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": opts.label || "chart", class: "chart" }, container);
    const axis = el("g", { class: "axis" }, svg);
    for (const t of ticks) {
      el("line", { x1: m.l, x2: width - m.r, y1: y(t), y2: y(t), class: "grid" }, axis);
      const label = el("text", { x: m.l - 6, y: y(t) + 4, "text-anchor": "end" }, axis);
      label.textContent = fmt(t);
    }
    const span = n > 1 ? opts.times[n - 1] - opts.times[0] : 0;
    const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(iw / 90))));
    for (let i = 0; i < n; i += every) {
      const label = el("text", { x: x(i), y: height - 6, "text-anchor": "middle" }, axis);
      label.textContent = timeLabel(opts.times[i], span);
    }
    el("line", { x1: m.l, x2: width - m.r, y1: m.t + ih, y2: m.t + ih, class: "baseline" }, axis);

    const plot = el("g", {}, svg);
    if (stacked) {
      const bw = Math.max(1, (iw / Math.max(n, 1)) * 0.72);
      for (let i = 0; i < n; i++) {
        let base = 0;
        for (const s of opts.series) {
          const v = s.values[i] || 0;
          if (v > 0) el("rect", { x: x(i) - bw / 2, y: y(base + v), width: bw, height: Math.max(0.5, y(base) - y(base + v)),
            fill: s.color }, plot);
          base += v;
        }
      }
    } else {
      for (const s of opts.series) {
        let d = "", pen = false;
        s.values.forEach((v, i) => {
          if (v === null || v === undefined) { pen = false; return; }
          d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
          pen = true;
        });
        if (d) el("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round" }, plot);
        s.values.forEach((v, i) => {
          const prev = s.values[i - 1], next = s.values[i + 1];
          if (v !== null && v !== undefined && (prev === null || prev === undefined) && (next === null || next === undefined)) {
            el("circle", { cx: x(i), cy: y(v), r: 2.5, fill: s.color }, plot);
          }
        });
      }
    }

    // Hover: a guide line and a tooltip with every series' value in that bucket.
    const guide = el("line", { y1: m.t, y2: m.t + ih, class: "guide", visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;
    container.appendChild(tip);
    const hit = el("rect", { x: m.l, y: m.t, width: iw, height: ih, fill: "transparent" }, svg);
    hit.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const px = ev.clientX - box.left;
      const i = Math.min(n - 1, Math.max(0, Math.floor(((px - m.l) / iw) * n)));
      if (!(n > 0)) return;
      guide.setAttribute("x1", x(i)); guide.setAttribute("x2", x(i));
      guide.setAttribute("visibility", "visible");
      tip.textContent = "";
      const head = document.createElement("div");
      head.className = "tip-time";
      head.textContent = new Date(opts.times[i] * 1000).toLocaleString();
      tip.appendChild(head);
      for (const s of opts.series) {
        const row = document.createElement("div");
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.style.background = s.color;
        row.appendChild(dot);
        const v = s.values[i];
        row.appendChild(document.createTextNode(`${s.name}: ${v === null || v === undefined ? "–" : fmt(v)}`));
        tip.appendChild(row);
      }
      tip.hidden = false;
      const left = Math.min(Math.max(0, x(i) + 10), width - 170);
      tip.style.left = `${left}px`;
      tip.style.top = `${m.t}px`;
    });
    hit.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); tip.hidden = true; });

    if (opts.series.length > 1 || opts.legend) {
      const legend = document.createElement("div");
      legend.className = "legend";
      for (const s of opts.series) {
        const item = document.createElement("span");
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.style.background = s.color;
        item.appendChild(dot);
        item.appendChild(document.createTextNode(s.name));
        legend.appendChild(item);
      }
      container.appendChild(legend);
    }
    return svg;
  }

  /* A horizontal bar split into parts: [{label, value, color}]. */
  function splitBar(container, parts) {
    container.textContent = "";
    const total = parts.reduce((a, p) => a + p.value, 0);
    const bar = document.createElement("div");
    bar.className = "split-bar";
    for (const p of parts) {
      if (!p.value) continue;
      const seg = document.createElement("span");
      seg.style.width = `${(100 * p.value) / total}%`;
      seg.style.background = p.color;
      seg.title = `${p.label}: ${p.value}`;
      bar.appendChild(seg);
    }
    if (!total) bar.classList.add("empty");
    container.appendChild(bar);
  }

  window.Charts = { timeChart, splitBar, niceTicks };
})();
