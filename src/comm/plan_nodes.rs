//! Which plan nodes a worker accepts from the wire, checked on the protobuf
//! before anything is decoded from it.
//!
//! A worker runs the stages rask cuts from the plans DataFusion makes for SQL
//! and dataframes: scans, projections, filters, joins, aggregates, sorts,
//! windows, repartitions and rask's own leaves. Everything else
//! `datafusion-proto` can describe (Avro scans, which panic when the feature
//! is off, `EXPLAIN ANALYZE`, streaming joins, async functions, buffers) is
//! refused with a task error naming the node, as is a plan nested deeper
//! than any rask makes. File sinks (`COPY TO`, `INSERT INTO` a listing table)
//! run on workers; what a PostgreSQL user may write is checked where their
//! statement is planned (`postgres::Access`).

use datafusion::common::{DataFusionError, Result};
use datafusion_proto::protobuf::PhysicalPlanNode;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType as Node;

/// The deepest plan a worker accepts (rask's deepest are a few dozen nodes).
pub const MAX_DEPTH: usize = 256;

/// Checks every node of `plan` against the allowlist.
pub fn admit(plan: &PhysicalPlanNode) -> Result<()> {
    let mut pending = vec![(plan, 0usize)];
    while let Some((node, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(refused(&format!(
                "a plan nested more than {MAX_DEPTH} nodes deep"
            )));
        }
        let Some(kind) = &node.physical_plan_type else {
            return Err(refused("a plan node of no type"));
        };
        for child in children(kind)? {
            pending.push((child, depth + 1));
        }
    }
    Ok(())
}

/// The inputs of an accepted node; an error for a refused one.
fn children(kind: &Node) -> Result<Vec<&PhysicalPlanNode>> {
    fn one(input: &Option<Box<PhysicalPlanNode>>) -> Vec<&PhysicalPlanNode> {
        input.as_deref().into_iter().collect()
    }
    fn two<'a>(
        left: &'a Option<Box<PhysicalPlanNode>>,
        right: &'a Option<Box<PhysicalPlanNode>>,
    ) -> Vec<&'a PhysicalPlanNode> {
        left.as_deref()
            .into_iter()
            .chain(right.as_deref())
            .collect()
    }
    Ok(match kind {
        Node::ParquetScan(_)
        | Node::CsvScan(_)
        | Node::JsonScan(_)
        | Node::ArrowScan(_)
        | Node::Empty(_)
        | Node::PlaceholderRow(_)
        | Node::GenerateSeries(_) => Vec::new(),
        Node::MemoryScan(n) => {
            for partition in &n.partitions {
                ipc_lengths_fit(partition)?;
            }
            Vec::new()
        }
        Node::JsonSink(n) => one(&n.input),
        Node::CsvSink(n) => one(&n.input),
        Node::ParquetSink(n) => one(&n.input),
        Node::Projection(n) => one(&n.input),
        Node::GlobalLimit(n) => one(&n.input),
        Node::LocalLimit(n) => one(&n.input),
        Node::Aggregate(n) => one(&n.input),
        Node::Sort(n) => one(&n.input),
        Node::CoalesceBatches(n) => one(&n.input),
        Node::Filter(n) => one(&n.input),
        Node::Merge(n) => one(&n.input),
        Node::Repartition(n) => one(&n.input),
        Node::Window(n) => one(&n.input),
        Node::SortPreservingMerge(n) => one(&n.input),
        Node::Unnest(n) => one(&n.input),
        Node::Cooperative(n) => one(&n.input),
        Node::HashJoin(n) => two(&n.left, &n.right),
        Node::CrossJoin(n) => two(&n.left, &n.right),
        Node::NestedLoopJoin(n) => two(&n.left, &n.right),
        Node::SortMergeJoin(n) => two(&n.left, &n.right),
        Node::Union(n) => n.inputs.iter().collect(),
        Node::Interleave(n) => n.inputs.iter().collect(),
        Node::Extension(n) => n.inputs.iter().collect(),
        Node::ScalarSubquery(n) => one(&n.input).into_iter().chain(&n.subqueries).collect(),
        Node::AvroScan(_) => return Err(refused("an Avro scan")),
        Node::Explain(_) => return Err(refused("EXPLAIN")),
        Node::Analyze(_) => return Err(refused("EXPLAIN ANALYZE")),
        Node::SymmetricHashJoin(_) => return Err(refused("a symmetric hash join")),
        Node::AsyncFunc(_) => return Err(refused("an async function")),
        Node::Buffer(_) => return Err(refused("a buffer")),
    })
}

/// Checks that each message of an Arrow IPC stream (a memory scan's rows)
/// claims no more bytes than the stream holds: arrow's reader allocates what
/// a message claims before reading it, and a failed allocation aborts the
/// process rather than panicking.
fn ipc_lengths_fit(stream: &[u8]) -> Result<()> {
    let short = |what: &str| refused(&format!("rows whose {what} claims more bytes than it has"));
    let mut rest = stream;
    loop {
        let Some((word, tail)) = rest.split_first_chunk::<4>() else {
            return Ok(());
        };
        let (word, tail) = match word {
            [0xff, 0xff, 0xff, 0xff] => match tail.split_first_chunk::<4>() {
                Some((word, tail)) => (word, tail),
                None => return Ok(()),
            },
            _ => (word, tail),
        };
        let meta = i32::from_le_bytes(*word);
        if meta <= 0 {
            return Ok(());
        }
        let meta = meta as usize;
        if meta > tail.len() {
            return Err(short("IPC message header"));
        }
        let message = datafusion::arrow::ipc::root_as_message(&tail[..meta])
            .map_err(|e| refused(&format!("rows that are not Arrow IPC ({e})")))?;
        let body = usize::try_from(message.bodyLength()).map_err(|_| short("IPC message"))?;
        if body > tail.len() - meta {
            return Err(short("IPC message"));
        }
        rest = &tail[meta + body..];
    }
}

fn refused(what: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "a worker runs only the plan nodes rask makes; this plan has {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_proto::protobuf::{AvroScanExecNode, FilterExecNode, ProjectionExecNode};

    fn node(kind: Node) -> PhysicalPlanNode {
        PhysicalPlanNode {
            physical_plan_type: Some(kind),
        }
    }

    #[test]
    fn a_refused_node_is_named_wherever_it_sits() {
        let avro = node(Node::AvroScan(AvroScanExecNode::default()));
        let filter = node(Node::Filter(Box::new(FilterExecNode {
            input: Some(Box::new(avro)),
            ..Default::default()
        })));
        let err = admit(&filter).unwrap_err().to_string();
        assert!(err.contains("an Avro scan"), "{err}");
    }

    #[test]
    fn rows_that_claim_more_bytes_than_they_have_are_refused() {
        use datafusion::arrow::array::Int32Array;
        use datafusion::arrow::ipc::writer::StreamWriter;
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion_proto::protobuf::MemoryScanExecNode;
        let batch = RecordBatch::try_from_iter([(
            "a",
            std::sync::Arc::new(Int32Array::from(vec![1, 2])) as _,
        )])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let scan = |partition: Vec<u8>| {
            node(Node::MemoryScan(MemoryScanExecNode {
                partitions: vec![partition],
                ..Default::default()
            }))
        };
        admit(&scan(bytes.clone())).unwrap();
        // Cut short: the last message's body is no longer there.
        let err = admit(&scan(bytes[..bytes.len() - 12].to_vec())).unwrap_err();
        assert!(err.to_string().contains("claims more bytes"), "{err}");
    }

    #[test]
    fn a_plan_too_deep_is_refused_without_recursing() {
        let mut plan = node(Node::Empty(Default::default()));
        for _ in 0..MAX_DEPTH + 1 {
            plan = node(Node::Projection(Box::new(ProjectionExecNode {
                input: Some(Box::new(plan)),
                ..Default::default()
            })));
        }
        let err = admit(&plan).unwrap_err().to_string();
        assert!(err.contains("nested more than"), "{err}");
    }
}
