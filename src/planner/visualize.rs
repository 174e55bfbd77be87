//! A [`StageGraph`] drawn: Graphviz DOT (one node per task, one colour per
//! operation) and a self-contained SVG laid out here, stage by stage, so no
//! Graphviz install is needed (Dask's `visualize` needs one).
//!
//! Past [`MAX_DRAWN_TASKS`] tasks a stage is drawn as one box with its task
//! count, and edges join stages instead of tasks.

use std::fmt::Write;

use datafusion::common::tree_node::TreeNode;

use super::StageGraph;
use crate::exec::ReadMode;

/// Tasks of one stage drawn one by one, at most.
pub const MAX_DRAWN_TASKS: usize = 64;

/// Colours by operation, in order of first appearance.
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

impl StageGraph {
    /// The colour of stage `stage`'s operation.
    fn colour(&self, stage: usize) -> &'static str {
        let operation = self.operation(stage);
        let first = (0..self.stages.len())
            .position(|s| self.operation(s) == operation)
            .unwrap_or(stage);
        PALETTE[first % PALETTE.len()]
    }

    /// For each stage it reads, whether the read is all-to-all (a shuffle).
    fn reads(&self, stage: usize) -> Vec<(usize, bool)> {
        let mut reads = Vec::new();
        let _ = self.stages[stage].plan.apply(|node| {
            if let Some(read) = node.downcast_ref::<crate::exec::StageReadExec>() {
                reads.push((read.stage(), read.mode() == ReadMode::Bucket));
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        reads
    }

    /// Task `partition` of stage `reader` reads which tasks of stage `input`.
    fn edges(&self, input: usize, reader: usize, all_to_all: bool, partition: usize) -> Vec<usize> {
        let n = self.stages[input].partitions();
        let readers = self.stages[reader].partitions();
        // A shuffle, or one task reading a whole stage (a merge, a build side).
        if all_to_all || readers == 1 {
            (0..n).collect()
        } else {
            vec![partition.min(n.saturating_sub(1))]
        }
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph tasks {\n  rankdir=BT;\n  node [style=filled, fontcolor=white, fontname=\"sans-serif\"];\n",
        );
        for (s, stage) in self.stages.iter().enumerate() {
            let colour = self.colour(s);
            let n = stage.partitions();
            if n > MAX_DRAWN_TASKS {
                let _ = writeln!(
                    out,
                    "  \"{}\" [label=\"{} ×{n}\", shape=box, fillcolor=\"{colour}\"];",
                    self.stage_name(s),
                    self.operation(s)
                );
            } else {
                for p in 0..n {
                    let _ = writeln!(
                        out,
                        "  \"{}\" [label=\"{}\", shape=circle, fillcolor=\"{colour}\"];",
                        self.key(s, p),
                        p
                    );
                }
            }
        }
        for (s, stage) in self.stages.iter().enumerate() {
            for (input, all_to_all) in self.reads(s) {
                let big = stage.partitions() > MAX_DRAWN_TASKS
                    || self.stages[input].partitions() > MAX_DRAWN_TASKS;
                if big {
                    let _ = writeln!(
                        out,
                        "  \"{}\" -> \"{}\";",
                        self.node(input, 0),
                        self.node(s, 0)
                    );
                    continue;
                }
                for p in 0..stage.partitions() {
                    for i in self.edges(input, s, all_to_all, p) {
                        let _ = writeln!(
                            out,
                            "  \"{}\" -> \"{}\";",
                            self.key(input, i),
                            self.key(s, p)
                        );
                    }
                }
            }
        }
        if let Some(merge) = self.merge() {
            let last = self.stages.len() - 1;
            let _ = writeln!(
                out,
                "  \"client\" [label=\"{merge}\", shape=box, fillcolor=\"#555555\"];"
            );
            for p in 0..self.stages[last].partitions().min(MAX_DRAWN_TASKS) {
                let _ = writeln!(out, "  \"{}\" -> \"client\";", self.node(last, p));
            }
        }
        out.push_str("}\n");
        out
    }

    fn stage_name(&self, stage: usize) -> String {
        format!("{}-{}", self.operation(stage), stage)
    }

    /// The DOT node of task `partition` of `stage` (its stage's box past the limit).
    fn node(&self, stage: usize, partition: usize) -> String {
        if self.stages[stage].partitions() > MAX_DRAWN_TASKS {
            self.stage_name(stage)
        } else {
            self.key(stage, partition).to_string()
        }
    }

    /// The graph as a standalone SVG: a row per stage from the bottom up, a
    /// circle per task coloured by operation, a legend of operations.
    pub fn to_svg(&self) -> String {
        const GAP: f64 = 28.0;
        const ROW: f64 = 90.0;
        const R: f64 = 9.0;
        let drawn = |s: usize| self.stages[s].partitions().min(MAX_DRAWN_TASKS);
        let widest = (0..self.stages.len()).map(drawn).max().unwrap_or(1).max(1);
        let width = (widest as f64 * GAP + 260.0).max(420.0);
        let rows = self.stages.len() + usize::from(self.merge().is_some());
        let height = rows as f64 * ROW + 40.0;
        let centre = |s: usize, p: usize| {
            let n = drawn(s) as f64;
            let x = 40.0 + (widest as f64 - n) * GAP / 2.0 + p as f64 * GAP;
            let y = height - 40.0 - s as f64 * ROW;
            (x, y)
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        for (s, stage) in self.stages.iter().enumerate() {
            for (input, all_to_all) in self.reads(s) {
                for p in 0..drawn(s) {
                    for i in self.edges(input, s, all_to_all, p) {
                        if i >= drawn(input) {
                            continue;
                        }
                        let ((x1, y1), (x2, y2)) = (centre(input, i), centre(s, p));
                        let _ = writeln!(
                            svg,
                            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#bbb\" stroke-width=\"0.6\"/>"
                        );
                    }
                }
            }
            let colour = self.colour(s);
            for p in 0..drawn(s) {
                let (x, y) = centre(s, p);
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{R}\" fill=\"{colour}\"><title>{}</title></circle>",
                    self.key(s, p)
                );
            }
            let (_, y) = centre(s, 0);
            let more = if stage.partitions() > MAX_DRAWN_TASKS {
                format!(" (first {MAX_DRAWN_TASKS} drawn)")
            } else {
                String::new()
            };
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{} × {}{more}</text>",
                40.0 + widest as f64 * GAP + 10.0,
                y + 4.0,
                self.operation(s),
                stage.partitions()
            );
        }
        if let Some(merge) = self.merge() {
            let last = self.stages.len() - 1;
            let (x, y) = (40.0 + (widest as f64 - 1.0) * GAP / 2.0, 40.0);
            for p in 0..drawn(last) {
                let (x1, y1) = centre(last, p);
                let _ = writeln!(
                    svg,
                    "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#bbb\" stroke-width=\"0.6\"/>"
                );
            }
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"18\" height=\"18\" fill=\"#555\"/><text x=\"{:.1}\" y=\"{:.1}\">{merge} in the client</text>",
                x - 9.0,
                y - 9.0,
                40.0 + widest as f64 * GAP + 10.0,
                y + 4.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}
