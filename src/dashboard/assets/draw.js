// The rask dashboard's drawing code, shared by its live pages (dashboard.js)
// and by reports written to a file (report.js). No libraries: both work offline.
"use strict";

const WINDOW_MS = 30000;  // the task stream shows at most the last 30 seconds
const BARS_KEPT = 5000;

// What the pages draw; the dashboard fills it from its event stream, a report
// from the data written into it.
const state = { bars: [], barsSeen: 0, workers: [], progress: [], now: 0, from: null, links: true };

function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 2 : 0) + " " + units[i];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

// One colour per operation, the same on every page and every load.
function colour(operation, kind) {
  if (kind === "transfer") return "#e53935";
  if (kind === "spill") return "#fb8c00";
  if (kind === "erred") return "#000";
  let h = 0;
  for (const c of operation) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 55%, 55%)`;
}

function table(id, headers, rows) {
  const head = el("tr");
  for (const [title, num] of headers) head.append(el("th", num ? { class: "num" } : {}, title));
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    row.forEach((cell, i) => {
      const td = el("td", headers[i][1] ? { class: "num" } : {});
      td.append(cell instanceof Node ? cell : String(cell));
      tr.append(td);
    });
    body.append(tr);
  }
  return el("table", { id }, el("thead", {}, head), body);
}

function meter(parts, total) {
  const m = el("span", { class: "meter" });
  let left = 0;
  for (const [cls, value] of parts) {
    const width = total > 0 ? Math.min(100, (100 * value) / total) : 0;
    m.append(el("span", { class: cls, style: `left:${left}%;width:${width}%` }));
    left += width;
  }
  return m;
}

function drawStatus(main) {
  main.replaceChildren();
  const count = el("p", { id: "stream-count", class: "muted" });
  count.textContent = `${state.barsSeen} bars in the stream (tasks, transfers, spills)`;
  main.append(el("h2", {}, "Task stream"), count);
  const rows = [];
  for (const w of state.workers) {
    for (let t = 0; t < Math.max(1, w.info.nthreads); t++) rows.push([w.info.id, t, w.info.name]);
  }
  const rowHeight = 18, left = 200, width = 1000;
  const plot = svg("svg", { id: "stream", width: left + width, height: Math.max(1, rows.length) * rowHeight + 20,
                           "data-bars": String(state.barsSeen) });
  const rowOf = new Map(rows.map((r, i) => [`${r[0]}/${r[1]}`, i]));
  rows.forEach(([, t, name], i) => {
    const label = svg("text", { x: 4, y: i * rowHeight + 13, "font-size": 11 });
    label.textContent = `${name} #${t}`;
    plot.append(label);
  });
  // A report draws its whole run (`state.from` on); the live page the last
  // 30 seconds, or at least a second while the stream is younger.
  const oldest = state.bars.length ? Math.min(...state.bars.map(b => b.start)) : state.now;
  const span = state.from != null ? Math.max(1, state.now - state.from)
                                  : Math.min(WINDOW_MS, Math.max(1000, state.now - oldest));
  const start = state.now - span;
  for (const bar of state.bars) {
    if (bar.end < start) continue;
    const row = rowOf.get(`${bar.worker}/${bar.row}`);
    if (row === undefined) continue;
    const x = left + Math.max(0, (bar.start - start) / span) * width;
    const w = Math.max(1.5, ((bar.end - Math.max(bar.start, start)) / span) * width);
    const rect = svg("rect", { x, y: row * rowHeight + 2, width: w, height: rowHeight - 4,
                               fill: colour(bar.operation, bar.kind), class: `bar ${bar.kind}` });
    const title = svg("title");
    title.textContent = `${bar.key} (${bar.kind}) ${(bar.end - bar.start).toFixed(1)} ms` +
      (bar.nbytes ? `, ${bytes(bar.nbytes)}` : "");
    rect.append(title);
    if (state.links && (bar.kind === "task" || bar.kind === "erred")) {
      rect.addEventListener("click", () => { location.href = "/info/task/" + encodeURIComponent(bar.key); });
    }
    plot.append(rect);
  }
  main.append(plot);
  const legend = el("p", { class: "legend muted" });
  for (const [name, c] of [["transfer", "#e53935"], ["spill", "#fb8c00"], ["erred", "#000"]]) {
    legend.append(el("span", {}, el("i", { style: `background:${c}` }), name));
  }
  main.append(legend);

  main.append(el("h2", {}, "Progress"));
  const byOperation = new Map();
  for (const g of state.progress) {
    if (g.live === 0 && !byOperation.has(g.operation) && byOperation.size >= 12) continue;
    const o = byOperation.get(g.operation) || { total: 0, done: 0, erred: 0 };
    o.total += g.total; o.done += g.done; o.erred += g.erred;
    byOperation.set(g.operation, o);
  }
  main.append(table("progress", [["operation"], ["", false], ["done / total", true], ["erred", true]],
    [...byOperation].map(([op, o]) => [op, meter([["done", o.done], ["erred", o.erred]], o.total),
                                       `${o.done} / ${o.total}`, o.erred])));

  main.append(el("h2", {}, "Memory per worker"));
  main.append(table("memory", [["worker"], [""], ["managed", true], ["spilled", true], ["limit", true]],
    state.workers.map(w => {
      const limit = w.info.memory_limit || Math.max(1, w.metrics.memory + w.metrics.spilled);
      return [w.info.name, meter([["managed", w.metrics.memory], ["spilled", w.metrics.spilled]], limit),
              bytes(w.metrics.memory), bytes(w.metrics.spilled), bytes(w.info.memory_limit)];
    })));
}

function facts(pairs) {
  const dl = el("dl");
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v)));
  return dl;
}

