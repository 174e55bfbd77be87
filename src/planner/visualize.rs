//! A [`StageGraph`] drawn: Graphviz DOT (one node per task, one colour per
//! operation) and a self-contained SVG laid out here, stage by stage, so no
//! Graphviz install is needed (Dask's `visualize` needs one).
//!
//! Persisted partitions the query reads are drawn below its stages, with
//! their state: in memory (a dark ring), still computing (faded, dashed) or
//! erred (red). Past [`MAX_DRAWN_TASKS`] tasks a row is drawn as one box with
//! its task count, and edges join rows instead of tasks.

use std::fmt::Write;

use datafusion::common::tree_node::TreeNode;

use super::StageGraph;
use crate::exec::{PartitionState, ReadMode};
use crate::key::Key;

/// Tasks of one stage drawn one by one, at most.
pub const MAX_DRAWN_TASKS: usize = 64;

/// Colours by operation, in order of first appearance.
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// The fill of an erred partition.
const ERRED: &str = "#d62728";

/// How a row's tasks read another row's.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Every task reads every task (a shuffle, a merge).
    AllToAll,
    /// Task `i` reads task `i`.
    Aligned,
    /// Task `i` reads the tasks listed `i`th.
    Explicit(Vec<Vec<usize>>),
}

/// One row of the drawing: a stage's tasks, persisted partitions, or calls of
/// one function at one depth of a graph of calls.
pub(crate) struct Row {
    /// `aggregate`, or `persisted aggregate`.
    label: String,
    operation: String,
    /// Names the row's box past [`MAX_DRAWN_TASKS`].
    id: String,
    keys: Vec<Key>,
    /// For persisted partitions, where each stands.
    states: Option<Vec<PartitionState>>,
    /// Rows read, each with how.
    reads: Vec<(usize, Link)>,
}

impl Row {
    /// A row of `keys`, labelled `operation` (and coloured by it), with their
    /// states if they are known, reading rows below it by `reads`.
    pub(crate) fn new(
        operation: &str,
        id: String,
        keys: Vec<Key>,
        states: Option<Vec<PartitionState>>,
        reads: Vec<(usize, Link)>,
    ) -> Self {
        Row {
            label: operation.to_string(),
            operation: operation.to_string(),
            id,
            keys,
            states,
            reads,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn drawn(&self) -> usize {
        self.len().min(MAX_DRAWN_TASKS)
    }

    fn big(&self) -> bool {
        self.len() > MAX_DRAWN_TASKS
    }

    fn state(&self, partition: usize) -> Option<PartitionState> {
        self.states.as_ref()?.get(partition).copied()
    }

    /// The DOT node of `partition` (the row's box past the limit).
    fn node(&self, partition: usize) -> String {
        if self.big() {
            self.id.clone()
        } else {
            self.keys[partition].to_string()
        }
    }
}

/// Rows of tasks to draw, bottom up, each reading rows below it.
pub(crate) struct Layout {
    rows: Vec<Row>,
    colours: Vec<&'static str>,
    /// The merge the client runs over the top row, if any.
    merge: Option<String>,
}

impl Layout {
    /// The drawing of `rows`, coloured by operation.
    pub(crate) fn new(rows: Vec<Row>, merge: Option<String>) -> Self {
        let colours = (0..rows.len())
            .map(|r| {
                let first = rows
                    .iter()
                    .position(|row| row.operation == rows[r].operation)
                    .unwrap_or(r);
                PALETTE[first % PALETTE.len()]
            })
            .collect();
        Layout {
            rows,
            colours,
            merge,
        }
    }

    /// Writes the drawing to `path`: Graphviz DOT when it ends in `.dot` or
    /// `.gv`, otherwise SVG.
    pub(crate) fn write(&self, path: &std::path::Path) -> crate::Result<()> {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("dot" | "gv") => self.to_dot(),
            _ => self.to_svg(),
        };
        std::fs::write(path, text).map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A graph of stages: persisted inputs, then the stages.
    fn of_stages(graph: &StageGraph) -> Self {
        let persisted = graph.persisted();
        let row_of = |input: usize| match graph.persisted_input(input) {
            Some(_) => input - super::stages::PERSISTED_STAGES,
            None => persisted.len() + input,
        };
        let mut rows: Vec<Row> = persisted
            .iter()
            .enumerate()
            .map(|(i, p)| Row {
                label: format!("persisted {}", p.operation()),
                operation: p.operation().to_string(),
                id: format!("persisted-{i}"),
                keys: p.keys().to_vec(),
                states: Some((0..p.keys().len()).map(|k| p.state(k)).collect()),
                reads: Vec::new(),
            })
            .collect();
        // A query that only reads persisted partitions runs no task.
        let stages = if graph.only_reads_persisted() {
            &[][..]
        } else {
            &graph.stages[..]
        };
        for (s, stage) in stages.iter().enumerate() {
            let mut reads = Vec::new();
            let readers = stage.partitions();
            let _ = stage.plan.apply(|node| {
                if let Some(read) = node.downcast_ref::<crate::exec::StageReadExec>() {
                    // A shuffle, or one task reading a whole stage (a merge, a build side).
                    let link = if read.mode() == ReadMode::Bucket || readers == 1 {
                        Link::AllToAll
                    } else {
                        Link::Aligned
                    };
                    reads.push((row_of(read.stage()), link));
                }
                if let Some(map) = node.downcast_ref::<crate::exec::MapPartitionsExec>()
                    && let Some(crate::exec::MapArgument::Input(input)) = map.argument()
                {
                    reads.push((row_of(*input), Link::AllToAll));
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            });
            rows.push(Row {
                label: graph.operation(s).to_string(),
                operation: graph.operation(s).to_string(),
                id: format!("{}-{s}", graph.operation(s)),
                keys: graph.keys(s),
                states: None,
                reads,
            });
        }
        Layout::new(rows, graph.merge().map(str::to_string))
    }

    /// Task `partition` of a row reads which tasks of row `input`, by `link`.
    fn edges(&self, input: usize, link: &Link, partition: usize) -> Vec<usize> {
        let n = self.rows[input].len();
        match link {
            Link::AllToAll => (0..n).collect(),
            Link::Aligned => vec![partition.min(n.saturating_sub(1))],
            Link::Explicit(lists) => lists.get(partition).cloned().unwrap_or_default(),
        }
    }

    /// The fill of `partition` of row `row`.
    fn fill(&self, row: usize, partition: usize) -> &'static str {
        match self.rows[row].state(partition) {
            Some(PartitionState::Erred) => ERRED,
            _ => self.colours[row],
        }
    }

    /// Extra SVG attributes for a partition's state.
    fn svg_state(&self, row: usize, partition: usize) -> &'static str {
        match self.rows[row].state(partition) {
            Some(PartitionState::Memory) => " stroke=\"#222\" stroke-width=\"3\"",
            Some(PartitionState::Computing) => {
                " fill-opacity=\"0.35\" stroke=\"#555\" stroke-dasharray=\"3 2\""
            }
            Some(PartitionState::Erred) | None => "",
        }
    }

    /// Extra DOT attributes for a partition's state.
    fn dot_state(&self, row: usize, partition: usize) -> &'static str {
        match self.rows[row].state(partition) {
            Some(PartitionState::Memory) => ", color=\"#222222\", penwidth=3",
            Some(PartitionState::Computing) => ", style=\"filled,dashed\", fontcolor=black",
            Some(PartitionState::Erred) | None => "",
        }
    }

    /// A word for a partition's state, for tooltips.
    fn state_word(&self, row: usize, partition: usize) -> &'static str {
        match self.rows[row].state(partition) {
            Some(PartitionState::Memory) => " (in memory)",
            Some(PartitionState::Computing) => " (computing)",
            Some(PartitionState::Erred) => " (erred)",
            None => "",
        }
    }
}

impl StageGraph {
    /// Writes the graph to `path`: Graphviz DOT when it ends in `.dot` or
    /// `.gv`, otherwise a standalone SVG.
    pub fn write_drawing(&self, path: &std::path::Path) -> crate::Result<()> {
        Layout::of_stages(self).write(path)
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        Layout::of_stages(self).to_dot()
    }

    /// The graph as a standalone SVG: a row per stage from the bottom up, a
    /// circle per task coloured by operation, a label per row.
    pub fn to_svg(&self) -> String {
        Layout::of_stages(self).to_svg()
    }
}

impl Layout {
    /// The drawing in Graphviz DOT.
    pub(crate) fn to_dot(&self) -> String {
        let layout = self;
        let mut out = String::from(
            "digraph tasks {\n  rankdir=BT;\n  node [style=filled, fontcolor=white, fontname=\"sans-serif\"];\n",
        );
        for (r, row) in layout.rows.iter().enumerate() {
            if row.big() {
                let _ = writeln!(
                    out,
                    "  \"{}\" [label=\"{} ×{}\", shape=box, fillcolor=\"{}\"{}];",
                    row.id,
                    row.label,
                    row.len(),
                    layout.fill(r, 0),
                    layout.dot_state(r, 0)
                );
                continue;
            }
            for p in 0..row.len() {
                let _ = writeln!(
                    out,
                    "  \"{}\" [label=\"{p}\", shape=circle, fillcolor=\"{}\"{}];",
                    row.keys[p],
                    layout.fill(r, p),
                    layout.dot_state(r, p)
                );
            }
        }
        for row in &layout.rows {
            for (input, link) in &row.reads {
                let input = *input;
                if row.big() || layout.rows[input].big() {
                    let _ = writeln!(
                        out,
                        "  \"{}\" -> \"{}\";",
                        layout.rows[input].node(0),
                        row.node(0)
                    );
                    continue;
                }
                for p in 0..row.len() {
                    for i in layout.edges(input, link, p) {
                        let _ = writeln!(
                            out,
                            "  \"{}\" -> \"{}\";",
                            layout.rows[input].keys[i], row.keys[p]
                        );
                    }
                }
            }
        }
        if let (Some(merge), Some(last)) = (&self.merge, layout.rows.last()) {
            let _ = writeln!(
                out,
                "  \"client\" [label=\"{merge}\", shape=box, fillcolor=\"#555555\"];"
            );
            for p in 0..last.drawn() {
                let _ = writeln!(out, "  \"{}\" -> \"client\";", last.node(p));
            }
        }
        out.push_str("}\n");
        out
    }

    /// The drawing as a standalone SVG: a row of circles per row, bottom up,
    /// coloured by operation, a label per row.
    pub(crate) fn to_svg(&self) -> String {
        const GAP: f64 = 28.0;
        const ROW: f64 = 90.0;
        const R: f64 = 9.0;
        let layout = self;
        let rows = &layout.rows;
        let widest = rows.iter().map(Row::drawn).max().unwrap_or(1).max(1);
        let width = (widest as f64 * GAP + 300.0).max(420.0);
        let height = (rows.len() + usize::from(self.merge.is_some())) as f64 * ROW + 40.0;
        let label_x = 40.0 + widest as f64 * GAP + 10.0;
        let centre = |r: usize, p: usize| {
            let n = rows[r].drawn() as f64;
            let x = 40.0 + (widest as f64 - n) * GAP / 2.0 + p as f64 * GAP;
            let y = height - 40.0 - r as f64 * ROW;
            (x, y)
        };
        let line = |svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)| {
            let _ = writeln!(
                svg,
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#bbb\" stroke-width=\"0.6\"/>"
            );
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        for (r, row) in rows.iter().enumerate() {
            for (input, link) in &row.reads {
                let input = *input;
                for p in 0..row.drawn() {
                    for i in layout.edges(input, link, p) {
                        if i < rows[input].drawn() {
                            line(&mut svg, centre(input, i), centre(r, p));
                        }
                    }
                }
            }
            for p in 0..row.drawn() {
                let (x, y) = centre(r, p);
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{R}\" fill=\"{}\"{}><title>{}{}</title></circle>",
                    layout.fill(r, p),
                    layout.svg_state(r, p),
                    row.keys[p],
                    layout.state_word(r, p)
                );
            }
            let (_, y) = centre(r, 0);
            let more = if row.big() {
                format!(" (first {MAX_DRAWN_TASKS} drawn)")
            } else {
                String::new()
            };
            let held = match &row.states {
                Some(states) => {
                    let memory = states
                        .iter()
                        .filter(|s| **s == PartitionState::Memory)
                        .count();
                    format!(", {memory} in memory")
                }
                None => String::new(),
            };
            let _ = writeln!(
                svg,
                "<text x=\"{label_x:.1}\" y=\"{:.1}\" fill=\"{}\">{} × {}{held}{more}</text>",
                y + 4.0,
                layout.colours[r],
                row.label,
                row.len()
            );
        }
        if let (Some(merge), Some(last)) = (&self.merge, rows.len().checked_sub(1)) {
            let (x, y) = (40.0 + (widest as f64 - 1.0) * GAP / 2.0, 40.0);
            for p in 0..rows[last].drawn() {
                line(&mut svg, centre(last, p), (x, y));
            }
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"18\" height=\"18\" fill=\"#555\"/><text x=\"{label_x:.1}\" y=\"{:.1}\">{merge} in the client</text>",
                x - 9.0,
                y - 9.0,
                y + 4.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}
