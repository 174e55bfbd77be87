// The rask dashboard: the live pages, drawn (with draw.js) from /api/v1/ and
// the updates /api/v1/events pushes.
"use strict";

async function json(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

function showError(e) {
  document.getElementById("error").textContent = e ? "the scheduler does not answer: " + e : "";
}

// ----- pages ------------------------------------------------------------------------------

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
