// A rask report (Client::report, `rask query --report FILE`): the status page
// of the dashboard over the whole of a recorded run, then time per stage,
// transfers and spills, and each query with its stages. Its data is written
// into the page; it needs no server and no network.
"use strict";

const data = JSON.parse(document.getElementById("report-data").textContent);
const seconds = (data.now - data.start) / 1000;

function ms(n) {
  return n < 10 ? n.toFixed(2) + " ms" : n < 10000 ? n.toFixed(1) + " ms" : (n / 1000).toFixed(2) + " s";
}

// The group of a bar: the longest group name its key starts with, else its operation.
function groupOf(bar, names) {
  let best = "";
  for (const name of names) if (name.length > best.length && bar.key.startsWith(name)) best = name;
  return best || bar.operation;
}

function drawStages(main) {
  const names = data.progress.map(g => g.name);
  const stages = new Map();
  for (const bar of data.bars) {
    if (bar.kind !== "task" && bar.kind !== "erred") continue;
    const name = groupOf(bar, names);
    const s = stages.get(name) || { operation: bar.operation, tasks: 0, erred: 0, busy: 0, from: bar.start, to: bar.end };
    s.tasks += 1;
    if (bar.kind === "erred") s.erred += 1;
    s.busy += bar.end - bar.start;
    s.from = Math.min(s.from, bar.start);
    s.to = Math.max(s.to, bar.end);
    stages.set(name, s);
  }
  const rows = [...stages].sort((a, b) => a[1].from - b[1].from).map(([name, s]) => [
    name, s.operation, s.tasks, s.erred, ms(s.busy), ms(s.busy / s.tasks),
    ms(s.from - data.start), ms(s.to - s.from),
  ]);
  main.append(el("h2", {}, "Time per stage"));
  main.append(table("stages", [["stage or group"], ["operation"], ["tasks", true], ["erred", true],
    ["task time", true], ["mean", true], ["began at", true], ["lasted", true]], rows));
}

function drawMoves(main) {
  const moves = new Map();
  for (const bar of data.bars) {
    if (bar.kind !== "transfer" && bar.kind !== "spill") continue;
    const worker = data.workers.find(w => w.info.id === bar.worker);
    const key = `${bar.kind}\u0000${worker ? worker.info.name : bar.worker}`;
    const m = moves.get(key) || { count: 0, bytes: 0, time: 0 };
    m.count += 1; m.bytes += bar.nbytes; m.time += bar.end - bar.start;
    moves.set(key, m);
  }
  main.append(el("h2", {}, "Transfers and spills"));
  if (!moves.size) {
    main.append(el("p", { id: "moves", class: "muted" }, "none: every task found its inputs where it ran"));
    return;
  }
  main.append(table("moves", [["kind"], ["worker"], ["count", true], ["bytes", true], ["time", true]],
    [...moves].map(([key, m]) => [...key.split("\u0000"), m.count, bytes(m.bytes), ms(m.time)])));
}

function drawQueries(main) {
  main.append(el("h2", {}, `Queries (${data.queries.length})`));
  const list = el("div", { id: "queries" });
  data.queries.forEach((q, i) => {
    list.append(el("h3", {}, `Query ${i + 1}`), el("pre", { class: "sql" }, q.sql),
                el("pre", { class: "stages" }, q.stages));
  });
  main.append(list);
}

state.bars = data.bars;
state.barsSeen = data.bars.length;
state.workers = data.workers;
state.progress = data.progress;
state.now = data.now;
state.from = data.start;
state.links = false;

document.getElementById("summary").textContent =
  `${data.title} · ${data.began} · ${seconds.toFixed(2)} s · ${data.cluster}`;
const main = document.getElementById("main");
drawStatus(main);
main.prepend(facts([
  ["began", data.began], ["lasted", `${seconds.toFixed(3)} s`], ["cluster", data.cluster],
  ["bars", data.bars_lost ? `${data.bars.length} (the ${data.bars_lost} first were no longer kept)` : data.bars.length],
]));
drawStages(main);
drawMoves(main);
drawQueries(main);
