// The rask dashboard: one script for every page, drawn from /api/v1/ and the
// updates /api/v1/events pushes. No libraries: the page works offline.
"use strict";

const WINDOW_MS = 30000;  // the task stream shows at most the last 30 seconds
const BARS_KEPT = 5000;

const state = { bars: [], barsSeen: 0, workers: [], progress: [], now: 0 };

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

async function json(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

function showError(e) {
  document.getElementById("error").textContent = e ? "the scheduler does not answer: " + e : "";
}

// ----- pages ------------------------------------------------------------------------------

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
  // The last 30 seconds, or less while the stream is younger.
  const oldest = state.bars.length ? Math.min(...state.bars.map(b => b.start)) : state.now;
  const span = Math.min(WINDOW_MS, Math.max(1000, state.now - oldest));
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
    if (bar.kind === "task" || bar.kind === "erred") {
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

function drawWorkers(main) {
  main.replaceChildren(el("h2", {}, `Workers (${state.workers.length})`));
  main.append(table("workers", [
    ["name"], ["address"], ["status"], ["threads", true], ["memory limit", true], ["memory", true], ["spilled", true],
    ["executing", true], ["in memory", true], ["ready", true], ["in flight", true], ["CPU %", true],
    ["read", true], ["written", true], ["last seen", true], ["nanny"], ["local directory"],
  ], state.workers.map(w => {
    const m = w.metrics;
    const link = el("a", { href: `/info/worker/${w.info.id}` }, w.info.name);
    return [link, w.info.address, w.status, w.info.nthreads, bytes(w.info.memory_limit), bytes(m.memory),
            bytes(m.spilled), m.executing, w.in_memory, m.ready, m.in_flight,
            m.cpu == null ? "—" : m.cpu.toFixed(0), bytes(m.bytes_read), bytes(m.bytes_written),
            w.last_seen == null ? "now" : `${w.last_seen.toFixed(1)} s ago`,
            w.info.nanny == null ? "no" : `pid ${w.info.nanny}`, w.info.local_directory];
  })));
}

const STATE_COLOURS = { waiting: "#b0bec5", queued: "#90a4ae", processing: "#43a047", memory: "#1e88e5",
                        erred: "#e53935", released: "#eceff1" };

async function drawGraph(main) {
  const graph = await json("/api/v1/graph");
  main.replaceChildren(el("h2", {}, "Task graph"));
  // Nodes: tasks when there are few, groups past the limit.
  let nodes, edges, byGroup = !graph.tasks;
  if (graph.tasks) {
    nodes = graph.tasks.map(t => ({ id: t.key, label: t.key, fill: STATE_COLOURS[t.state] || "#ccc", state: t.state }));
    edges = graph.tasks.flatMap(t => t.dependencies.map(d => [d, t.key]));
  } else {
    const live = graph.groups.filter(g => g.live > 0);
    nodes = live.map(g => ({ id: g.name, label: `${g.name}: ${g.done}/${g.total}` + (g.erred ? `, ${g.erred} erred` : ""),
                             fill: g.erred ? STATE_COLOURS.erred : g.done >= g.total ? STATE_COLOURS.memory : STATE_COLOURS.processing }));
    edges = live.flatMap(g => g.inputs.map(i => [i, g.name]));
  }
  main.append(el("p", { class: "muted", id: "graph-summary" },
    byGroup ? `more than ${graph.limit} tasks: ${nodes.length} groups shown` : `${nodes.length} tasks`));
  const index = new Map(nodes.map((n, i) => [n.id, i]));
  const depth = new Array(nodes.length).fill(0);
  const inputs = nodes.map(() => []);
  for (const [from, to] of edges) {
    if (index.has(from) && index.has(to)) inputs[index.get(to)].push(index.get(from));
  }
  const depthOf = (i, seen = new Set()) => {
    if (seen.has(i)) return 0;
    seen.add(i);
    if (depth[i]) return depth[i];
    depth[i] = inputs[i].length ? 1 + Math.max(...inputs[i].map(j => depthOf(j, seen))) : 0;
    return depth[i];
  };
  nodes.forEach((_, i) => depthOf(i));
  const columns = [];
  nodes.forEach((n, i) => { (columns[depth[i]] = columns[depth[i]] || []).push(i); });
  const dx = byGroup ? 260 : 90, dy = byGroup ? 40 : 16;
  const tallest = Math.max(1, ...columns.map(c => (c || []).length));
  const pos = [];
  columns.forEach((c, x) => (c || []).forEach((i, y) => { pos[i] = [20 + x * dx, 20 + y * dy]; }));
  const plot = svg("svg", { id: "graph", width: 40 + columns.length * dx + (byGroup ? 200 : 0), height: 40 + tallest * dy });
  for (const [from, to] of edges) {
    const a = pos[index.get(from)], b = pos[index.get(to)];
    if (a && b) plot.append(svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: "#bbb" }));
  }
  nodes.forEach((n, i) => {
    const [x, y] = pos[i];
    const node = svg("circle", { cx: x, cy: y, r: byGroup ? 8 : 5, fill: n.fill, class: `node ${n.state || "group"}` });
    const title = svg("title");
    title.textContent = n.label + (n.state ? ` (${n.state})` : "");
    node.append(title);
    if (!byGroup) node.addEventListener("click", () => { location.href = "/info/task/" + encodeURIComponent(n.id); });
    plot.append(node);
    if (byGroup) {
      const text = svg("text", { x: x + 12, y: y + 4, "font-size": 11 });
      text.textContent = n.label;
      plot.append(text);
    }
  });
  main.append(plot);
}

function facts(pairs) {
  const dl = el("dl");
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v)));
  return dl;
}

function taskLinks(keys) {
  const span = el("span");
  if (!keys.length) span.append("none");
  keys.forEach((k, i) => {
    if (i) span.append(", ");
    span.append(el("a", { href: "/info/task/" + encodeURIComponent(k) }, k));
  });
  return span;
}

async function drawInfo(main) {
  const path = location.pathname;
  if (path.startsWith("/info/worker/")) {
    const w = await json("/api/v1/workers/" + path.slice("/info/worker/".length));
    main.replaceChildren(el("h2", {}, `Worker ${w.info.name}`), facts([
      ["id", w.info.id], ["address", w.info.address], ["status", w.status], ["threads", w.info.nthreads],
      ["memory limit", bytes(w.info.memory_limit)], ["memory", bytes(w.metrics.memory)],
      ["spilled", bytes(w.metrics.spilled)], ["results held", w.metrics.results],
      ["processing", w.processing], ["executing", w.metrics.executing], ["ready", w.metrics.ready],
      ["in flight", w.metrics.in_flight], ["CPU %", w.metrics.cpu == null ? "—" : w.metrics.cpu.toFixed(0)],
      ["read", bytes(w.metrics.bytes_read)], ["written", bytes(w.metrics.bytes_written)],
      ["pid", w.info.pid == null ? "in process" : w.info.pid],
      ["nanny", w.info.nanny == null ? "none" : `pid ${w.info.nanny}`],
      ["local directory", w.info.local_directory], ["functions", w.info.functions.join(", ") || "none"],
    ]));
    return;
  }
  if (path.startsWith("/info/task/")) {
    const key = decodeURIComponent(path.slice("/info/task/".length));
    const t = await json("/api/v1/tasks/" + encodeURIComponent(key));
    main.replaceChildren(el("h2", {}, `Task ${t.key}`), facts([
      ["state", t.state], ["group", t.group || "none"], ["held by workers", t.who_has.join(", ") || "none"],
      ["wanted by", `${t.wanted_by} holders`], ["bytes", bytes(t.nbytes)],
      ["dependencies", taskLinks(t.dependencies)], ["dependents", taskLinks(t.dependents)],
      ["error", t.error || "none"],
    ]));
    return;
  }
  const info = await json("/api/v1/info");
  main.replaceChildren(el("h2", {}, "Scheduler"), facts([
    ["address", info.scheduler], ["dashboard", info.dashboard || "—"],
    ["started", new Date(info.started * 1000).toLocaleString()], ["workers", info.workers.length],
    ["threads", info.threads], ["memory", bytes(info.memory_limit)],
    ["tasks known", info.tasks_known], ["tasks finished", info.tasks_finished],
  ]));
  main.append(el("h2", {}, "Workers"));
  main.append(table("info-workers", [["id", true], ["name"], ["address"]], info.workers.map(w =>
    [w.id, el("a", { href: `/info/worker/${w.id}` }, w.name), w.address])));
}

// ----- wiring -----------------------------------------------------------------------------

const page = location.pathname.split("/")[1] || "status";
for (const a of document.querySelectorAll("nav a")) {
  if (a.dataset.page === page) a.classList.add("current");
}

function summarise(update) {
  const threads = update.workers.reduce((a, w) => a + w.info.nthreads, 0);
  document.getElementById("summary").textContent =
    `${update.workers.length} workers · ${threads} threads · ${update.tasks_known} tasks · ${update.tasks_finished} finished`;
}

function live() {
  const events = new EventSource("/api/v1/events");
  events.addEventListener("update", message => {
    const update = JSON.parse(message.data);
    state.workers = update.workers;
    state.progress = update.progress;
    state.now = update.stream.now;
    state.bars.push(...update.stream.bars);
    state.barsSeen += update.stream.bars.length;
    if (state.bars.length > BARS_KEPT) state.bars.splice(0, state.bars.length - BARS_KEPT);
    summarise(update);
    showError(null);
    const main = document.getElementById("main");
    if (page === "status") drawStatus(main);
    if (page === "workers") drawWorkers(main);
  });
  events.onerror = () => showError("lost the event stream; retrying");
}

async function redraw() {
  const main = document.getElementById("main");
  try {
    if (page === "graph") await drawGraph(main);
    if (page === "info") await drawInfo(main);
    showError(null);
  } catch (e) {
    showError(e);
  }
}

live();
if (page === "graph" || page === "info") {
  redraw();
  setInterval(redraw, page === "graph" ? 2000 : 5000);
}
