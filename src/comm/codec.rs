//! Plans across processes: [`RaskCodec`] teaches `datafusion-proto` rask's own
//! plan nodes, and [`encode_stage`] / [`decode_stage`] turn a [`StagePlan`]
//! into bytes and back.
//!
//! DataFusion's nodes are encoded by `datafusion-proto`; functions travel by
//! name and are looked up in the decoding worker's session. rask's leaves carry
//! only their parameters: a [`StageReadExec`] its stage, read mode and the
//! properties of the exchange it stands for; a [`TimeseriesExec`] its
//! generator's parameters, never data.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, internal_datafusion_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::physical_planning_context::{ScalarSubqueryResults, SubqueryIndex};
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionConfig;
use datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec;
use datafusion_proto::physical_plan::from_proto::{
    parse_physical_sort_exprs, parse_protobuf_partitioning,
};
use datafusion_proto::physical_plan::to_proto::{
    serialize_partitioning, serialize_physical_sort_exprs,
};
use datafusion_proto::physical_plan::{
    DefaultPhysicalProtoConverter, PhysicalExtensionCodec, PhysicalPlanDecodeContext,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::wire::{EncodedJob, EncodedStage, WireArg};
use crate::datasets::timeseries::{TimeseriesExec, TimeseriesSpec};
use crate::exec::{
    MapArgument, MapPartitionsExec, MapUnit, ReadMode, StageOutput, StagePlan, StageReadExec,
    TaskData, Value,
};
use crate::udf::Registry;
use crate::worker::{FunctionArg, Job};

/// Encodes and decodes rask's plan nodes for `datafusion-proto`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaskCodec;

/// rask's nodes on the wire.
#[derive(Debug, Serialize, Deserialize)]
enum Node {
    StageRead {
        stage: u32,
        whole: bool,
        /// `protobuf::Schema` bytes.
        schema: Vec<u8>,
        /// `protobuf::Partitioning` bytes.
        partitioning: Vec<u8>,
        /// Each ordering as `protobuf::PhysicalSortExprNodeCollection` bytes.
        orderings: Vec<Vec<u8>>,
    },
    Timeseries {
        start: i64,
        end: i64,
        freq: i64,
        partition_freq: i64,
        seed: u64,
        projection: Vec<u32>,
        fetch: Option<u64>,
    },
    /// A partition function, by registered name, with the schema it returns.
    MapPartitions {
        name: String,
        /// Whether it is called per batch rather than per partition.
        per_batch: bool,
        /// `protobuf::Schema` bytes.
        schema: Vec<u8>,
        /// The task input holding the function's argument, if it takes one.
        argument: Option<u32>,
    },
}

fn proto_err(e: impl std::fmt::Display) -> DataFusionError {
    internal_datafusion_err!("rask plan node: {e}")
}

impl PhysicalExtensionCodec for RaskCodec {
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let encoded = if let Some(read) = node.downcast_ref::<StageReadExec>() {
            let properties = read.properties();
            let schema = protobuf::Schema::try_from(read.schema().as_ref())?;
            let partitioning = serialize_partitioning(&properties.partitioning, self, converter)?;
            let orderings = properties
                .eq_properties
                .oeq_class()
                .iter()
                .map(|ordering| {
                    let nodes =
                        serialize_physical_sort_exprs(ordering.iter().cloned(), self, converter)?;
                    Ok(protobuf::PhysicalSortExprNodeCollection {
                        physical_sort_expr_nodes: nodes,
                    }
                    .encode_to_vec())
                })
                .collect::<Result<_>>()?;
            Node::StageRead {
                stage: read.stage() as u32,
                whole: read.mode() == ReadMode::Whole,
                schema: schema.encode_to_vec(),
                partitioning: partitioning.encode_to_vec(),
                orderings,
            }
        } else if let Some(scan) = node.downcast_ref::<TimeseriesExec>() {
            let spec = scan.spec();
            Node::Timeseries {
                start: spec.start,
                end: spec.end,
                freq: spec.freq,
                partition_freq: spec.partition_freq,
                seed: spec.seed,
                projection: scan.projection().iter().map(|&i| i as u32).collect(),
                fetch: scan.fetch().map(|f| f as u64),
            }
        } else if let Some(map) = node.downcast_ref::<MapPartitionsExec>() {
            let schema = protobuf::Schema::try_from(map.schema().as_ref())?;
            let argument = match map.argument() {
                None => None,
                Some(MapArgument::Input(input)) => Some(*input as u32),
                Some(MapArgument::Partitions(_)) => {
                    return Err(DataFusionError::NotImplemented(format!(
                        "map_partitions {}: an argument not cut into a task input cannot be sent",
                        map.function().name()
                    )));
                }
            };
            Node::MapPartitions {
                name: map.function().name().to_string(),
                per_batch: map.unit() == MapUnit::Batch,
                schema: schema.encode_to_vec(),
                argument,
            }
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to another process",
                node.name()
            )));
        };
        buf.extend(super::wire::encode(&encoded));
        Ok(())
    }

    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node: Node = super::wire::decode(buf, "plan node").map_err(proto_err)?;
        match node {
            Node::StageRead {
                stage,
                whole,
                schema,
                partitioning,
                orderings,
            } => {
                let schema = protobuf::Schema::decode(schema.as_slice()).map_err(proto_err)?;
                let schema = Arc::new(Schema::try_from(&schema)?);
                let decode = PhysicalPlanDecodeContext::new(ctx, self);
                let partitioning =
                    protobuf::Partitioning::decode(partitioning.as_slice()).map_err(proto_err)?;
                let partitioning =
                    parse_protobuf_partitioning(Some(&partitioning), &decode, &schema, converter)?
                        .ok_or_else(|| proto_err("a stage reader without partitioning"))?;
                let orderings = orderings
                    .iter()
                    .map(|bytes| {
                        let collection =
                            protobuf::PhysicalSortExprNodeCollection::decode(bytes.as_slice())
                                .map_err(proto_err)?;
                        parse_physical_sort_exprs(
                            &collection.physical_sort_expr_nodes,
                            &decode,
                            &schema,
                            converter,
                        )
                    })
                    .collect::<Result<Vec<Vec<PhysicalSortExpr>>>>()?;
                let eq = EquivalenceProperties::new_with_orderings(Arc::clone(&schema), orderings);
                let properties = PlanProperties::new(
                    eq,
                    partitioning,
                    EmissionType::Incremental,
                    Boundedness::Bounded,
                );
                let mode = if whole {
                    ReadMode::Whole
                } else {
                    ReadMode::Bucket
                };
                Ok(Arc::new(StageReadExec::new(
                    stage as usize,
                    mode,
                    Arc::new(properties),
                )))
            }
            Node::Timeseries {
                start,
                end,
                freq,
                partition_freq,
                seed,
                projection,
                fetch,
            } => {
                let spec = TimeseriesSpec {
                    start,
                    end,
                    freq,
                    partition_freq,
                    seed,
                };
                spec.validate().map_err(proto_err)?;
                let projection: Vec<usize> = projection.iter().map(|&i| i as usize).collect();
                let fetch = fetch.map(|f| f as usize);
                Ok(Arc::new(TimeseriesExec::try_new(
                    spec,
                    Some(&projection),
                    fetch,
                )?))
            }
            Node::MapPartitions {
                name,
                per_batch,
                schema,
                argument,
            } => {
                let [input] = inputs else {
                    return Err(proto_err("map_partitions takes one input"));
                };
                let function = ctx
                    .session_config()
                    .get_extension::<Registry>()
                    .and_then(|registry| registry.partition(&name).cloned())
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "the partition function {name} is not registered on this worker"
                        ))
                    })?;
                let schema = protobuf::Schema::decode(schema.as_slice()).map_err(proto_err)?;
                let schema = Arc::new(Schema::try_from(&schema)?);
                let unit = match per_batch {
                    true => MapUnit::Batch,
                    false => MapUnit::Partition,
                };
                Ok(Arc::new(MapPartitionsExec::new(
                    Arc::clone(input),
                    function,
                    unit,
                    schema,
                    argument.map(|input| MapArgument::Input(input as usize)),
                )))
            }
        }
    }
}

/// `stage` of query `query` as workers of another process receive it.
pub fn encode_stage(stage: &StagePlan, query: &str) -> Result<EncodedStage> {
    let plan = physical_plan_to_bytes_with_extension_codec(Arc::clone(&stage.plan), &RaskCodec)?;
    let output = match &stage.output {
        StageOutput::Whole => None,
        StageOutput::Partitioned(partitioning) => {
            let converter = DefaultPhysicalProtoConverter {};
            Some(serialize_partitioning(partitioning, &RaskCodec, &converter)?.encode_to_vec())
        }
    };
    let config = stage
        .config
        .options()
        .entries()
        .into_iter()
        // DataFusion's: rask's own settings (`rask.max_tasks`, listed
        // without their prefix) are the client's, not the workers'.
        .filter(|entry| entry.key.starts_with("datafusion."))
        .filter(|entry| {
            MACHINE_DEFAULTS.contains(&entry.key.as_str())
                || DEFAULTS.get(&entry.key) != Some(&entry.value)
        })
        .filter_map(|entry| Some((entry.key, entry.value?)))
        .collect();
    Ok(EncodedStage {
        id: format!("{query}/{}", stage.id),
        number: stage.id as u32,
        plan: plan.to_vec(),
        output,
        config,
        subqueries: encode_subquery_values(&stage.plan)?,
    })
}

/// DataFusion's default settings: a stage carries only the settings that
/// differ (the worker starts from the same defaults), a few hundred bytes
/// instead of the 7 KB of all of them in every task's message.
static DEFAULTS: std::sync::LazyLock<HashMap<String, Option<String>>> =
    std::sync::LazyLock::new(|| {
        datafusion::config::ConfigOptions::default()
            .entries()
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    });

/// Settings that travel even at their default, which depends on the machine
/// (its cores): a worker's own default would differ from the client's.
const MACHINE_DEFAULTS: [&str; 2] = [
    "datafusion.execution.target_partitions",
    "datafusion.execution.planning_concurrency",
];

/// The values of the scalar subqueries `plan` reads (computed before the
/// query was cut: `client::subqueries`), by index.
fn encode_subquery_values(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<Option<Vec<u8>>>> {
    let mut results: Option<ScalarSubqueryResults> = None;
    let mut mixed = false;
    plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(subquery) = e.downcast_ref::<ScalarSubqueryExpr>() {
                    match &results {
                        Some(r) if !ScalarSubqueryResults::ptr_eq(r, subquery.results()) => {
                            mixed = true
                        }
                        Some(_) => {}
                        None => results = Some(subquery.results().clone()),
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    if mixed {
        return Err(proto_err("a stage reads scalar subqueries of two scopes"));
    }
    let Some(results) = results else {
        return Ok(Vec::new());
    };
    // Every slot was filled before the query was cut; the first empty one is
    // past the end.
    (0..)
        .map_while(|i| results.get(SubqueryIndex::new(i)))
        .map(|value| {
            let proto = protobuf::ScalarValue::try_from(&value).map_err(proto_err)?;
            Ok(Some(proto.encode_to_vec()))
        })
        .collect()
}

/// A results container holding the subquery values of an encoded stage.
fn decode_subquery_values(values: &[Option<Vec<u8>>]) -> Result<ScalarSubqueryResults> {
    let results = ScalarSubqueryResults::new(values.len());
    for (i, bytes) in values.iter().enumerate() {
        if let Some(bytes) = bytes {
            let proto = protobuf::ScalarValue::decode(bytes.as_slice()).map_err(proto_err)?;
            let value = ScalarValue::try_from(&proto).map_err(proto_err)?;
            results.set(SubqueryIndex::new(i), value)?;
        }
    }
    Ok(results)
}

/// The stage `encoded` describes, its functions and object stores resolved in
/// `ctx` (the decoding worker's session). Only the plan nodes rask makes are
/// accepted ([`super::plan_nodes`]); a plan that makes `datafusion-proto` or
/// arrow panic (an Avro scan without the feature, a literal whose buffers do
/// not add up) is an error: a plan from the wire fails its task, never its
/// worker.
pub fn decode_stage(encoded: &EncodedStage, ctx: &TaskContext) -> Result<StagePlan> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unguarded(encoded, ctx)
    }))
    .map_err(|panic| {
        proto_err(format!(
            "a plan rask cannot run: {}",
            crate::exec::panic_message(panic.as_ref())
        ))
    })?
}

fn decode_unguarded(encoded: &EncodedStage, ctx: &TaskContext) -> Result<StagePlan> {
    let proto = protobuf::PhysicalPlanNode::decode(encoded.plan.as_slice()).map_err(proto_err)?;
    super::plan_nodes::admit(&proto)?;
    let mut context = PhysicalPlanDecodeContext::new(ctx, &RaskCodec);
    if !encoded.subqueries.is_empty() {
        context =
            context.with_scalar_subquery_results(decode_subquery_values(&encoded.subqueries)?);
    }
    let plan = DefaultPhysicalProtoConverter {}.proto_to_execution_plan(&proto, &context)?;
    let output = match &encoded.output {
        None => StageOutput::Whole,
        Some(bytes) => {
            let proto = protobuf::Partitioning::decode(bytes.as_slice()).map_err(proto_err)?;
            let decode = PhysicalPlanDecodeContext::new(ctx, &RaskCodec);
            let converter = DefaultPhysicalProtoConverter {};
            let schema = plan.schema();
            let partitioning =
                parse_protobuf_partitioning(Some(&proto), &decode, &schema, &converter)?
                    .ok_or_else(|| proto_err("a stage output without partitioning"))?;
            StageOutput::Partitioned(partitioning)
        }
    };
    let settings: HashMap<String, String> = encoded.config.iter().cloned().collect();
    let config = SessionConfig::from_string_hash_map(&settings)?;
    Ok(StagePlan::new(
        encoded.number as usize,
        plan,
        output,
        Arc::new(config),
    ))
}

/// A function's argument as it travels: a literal as its bytes.
fn encode_arg(function: &str, arg: &FunctionArg) -> Result<WireArg> {
    match arg {
        FunctionArg::Input(i) => Ok(WireArg::Input(*i)),
        FunctionArg::Literal(data) => {
            let value = data.value_ref().ok_or_else(|| {
                DataFusionError::Configuration(format!(
                    "an argument of {function} is a table, which cannot travel with the call"
                ))
            })?;
            let bytes = value.bytes().map_err(|e| {
                DataFusionError::Configuration(format!(
                    "an argument of {function} ({}) cannot be sent: {e}",
                    value.type_name()
                ))
            })?;
            if bytes.len() > super::MAX_ARGUMENT {
                return Err(DataFusionError::Configuration(format!(
                    "an argument of {function} is {} bytes, more than a task carries ({} at most): scatter it first (Client::scatter) and pass its future",
                    bytes.len(),
                    super::MAX_ARGUMENT
                )));
            }
            Ok(WireArg::Literal {
                type_name: value.type_name().to_string(),
                bytes: bytes.to_vec(),
            })
        }
    }
}

/// A function's argument as it arrived.
pub fn decode_arg(arg: &WireArg) -> FunctionArg {
    match arg {
        WireArg::Input(i) => FunctionArg::Input(*i),
        WireArg::Literal { type_name, bytes } => {
            FunctionArg::Literal(Arc::new(TaskData::Value(Value::encoded(
                datafusion::arrow::buffer::Buffer::from(bytes.as_slice()),
                type_name.clone(),
            ))))
        }
    }
}

/// `job` as it travels to a worker of another process.
pub fn encode_job(job: &Job) -> Result<EncodedJob> {
    Ok(match job {
        Job::Encoded(encoded) => encoded.clone(),
        Job::Concat => EncodedJob::Concat,
        Job::Function(function) if function.registered => EncodedJob::Function {
            name: function.name.to_string(),
            args: match function.args.as_deref() {
                Some(args) => Some(
                    args.iter()
                        .map(|arg| encode_arg(&function.name, arg))
                        .collect::<Result<_>>()?,
                ),
                None => None,
            },
        },
        Job::Function(function) => {
            return Err(DataFusionError::Configuration(format!(
                "the closure {} cannot run on workers of another process: register it \
                 (Registry::add_function) and call it by name (TaskGraph::call)",
                function.name
            )));
        }
        Job::Stage(stage) => {
            // A stage submitted by hand, not through a query: named by its address.
            let query = format!("stage-{:p}", Arc::as_ptr(&stage.stage));
            EncodedJob::Stage {
                stage: Arc::new(encode_stage(&stage.stage, &query)?),
                partition: stage.partition as u32,
                inputs: stage
                    .inputs
                    .iter()
                    .map(|(s, keys)| (*s as u32, keys.to_vec()))
                    .collect(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::collect;

    use super::*;

    #[test]
    fn a_plan_that_panics_datafusion_proto_is_an_error() {
        // Three bytes: a plan whose only node is an Avro scan.
        let avro = protobuf::PhysicalPlanNode {
            physical_plan_type: Some(protobuf::physical_plan_node::PhysicalPlanType::AvroScan(
                protobuf::AvroScanExecNode::default(),
            )),
        };
        let plan = avro.encode_to_vec();
        assert!(plan.len() <= 3, "{plan:?}");
        let stage = EncodedStage {
            id: "s".into(),
            number: 0,
            plan,
            output: None,
            config: Vec::new(),
            subqueries: Vec::new(),
        };
        let ctx = crate::exec::new_context(&Default::default(), None).unwrap();
        let e = decode_stage(&stage, &ctx.task_ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("this plan has an Avro scan"), "{e}");
    }

    /// Runs `sql`'s plan as planned and after a trip through bytes; both answers.
    async fn both_ways(setup: &[&str], sql: &str) -> (String, String) {
        let options = crate::exec::SessionOptions {
            target_partitions: 4,
            ..Default::default()
        };
        let ctx = crate::exec::new_context(&options, None).unwrap();
        crate::datasets::install(&ctx);
        for statement in setup {
            ctx.sql(statement).await.unwrap().collect().await.unwrap();
        }
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let bytes =
            physical_plan_to_bytes_with_extension_codec(Arc::clone(&plan), &RaskCodec).unwrap();
        let task = ctx.task_ctx();
        let back = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
            &bytes, &task, &RaskCodec,
        )
        .unwrap();
        let show = |batches: Vec<_>| pretty_format_batches(&batches).unwrap().to_string();
        let before = show(collect(plan, Arc::clone(&task)).await.unwrap());
        let after = show(collect(back, task).await.unwrap());
        (before, after)
    }

    /// A partition function travels by name, with what it is called on.
    #[test]
    fn map_partitions_keep_their_unit_through_bytes() {
        let function = crate::udf::partition("same", Ok::<_, String>);
        let registry = crate::udf::Registry::new().with_partition(function.clone());
        let ctx = crate::exec::new_context(&Default::default(), None).unwrap();
        registry.install(&ctx);
        let schema = Arc::new(Schema::empty());
        let input = Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
            Arc::clone(&schema),
        ));
        for unit in [MapUnit::Partition, MapUnit::Batch] {
            let plan = Arc::new(MapPartitionsExec::new(
                input.clone(),
                function.clone(),
                unit,
                Arc::clone(&schema),
                None,
            ));
            let bytes = physical_plan_to_bytes_with_extension_codec(plan, &RaskCodec).unwrap();
            let back = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
                &bytes,
                &ctx.task_ctx(),
                &RaskCodec,
            )
            .unwrap();
            let map = back.downcast_ref::<MapPartitionsExec>().expect("a map");
            assert_eq!((map.function().name(), map.unit()), ("same", unit));
        }
    }

    #[tokio::test]
    async fn plans_answer_the_same_after_a_trip_through_bytes() {
        let dir = tempfile_dir();
        let write = format!(
            "COPY (SELECT * FROM timeseries('2000-01-01', '2000-01-04', '1min')) TO '{dir}/ts/' STORED AS PARQUET PARTITIONED BY (name)"
        );
        let table = format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{dir}/ts/'");
        for sql in [
            "SELECT name, count(*), max(x) FROM timeseries('2000-01-01', '2000-01-02') GROUP BY name ORDER BY name",
            "SELECT count(*) FROM t WHERE x > -2",
            "SELECT count(*), count(DISTINCT name) FROM t",
        ] {
            let (before, after) = both_ways(&[&write, &table], sql).await;
            assert_eq!(before, after, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_stage_carries_only_the_settings_that_differ_from_the_defaults() {
        let options = crate::exec::SessionOptions {
            target_partitions: 3,
            batch_size: Some(1234),
            ..Default::default()
        };
        let ctx = crate::exec::new_context(&options, None).unwrap();
        crate::datasets::install(&ctx);
        let plan = ctx
            .sql("SELECT name, max(x) FROM timeseries() GROUP BY name")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let graph = crate::planner::StageGraph::cut(plan, Arc::new(ctx.copied_config())).unwrap();
        let encoded = encode_stage(&graph.stages[0], "q").unwrap();
        let keys: Vec<&str> = encoded.config.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys.contains(&"datafusion.execution.batch_size"),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"datafusion.execution.target_partitions"),
            "{keys:?}"
        );
        assert!(encoded.config.len() < 20, "{keys:?}");
        // The worker's session has every setting the client's had.
        let decoded = decode_stage(&encoded, &ctx.task_ctx()).unwrap();
        let theirs = decoded.config.options().entries();
        for ours in graph.stages[0].config.options().entries() {
            if !ours.key.starts_with("datafusion.") {
                continue;
            }
            let same = theirs.iter().find(|e| e.key == ours.key).map(|e| &e.value);
            assert_eq!(same, Some(&ours.value), "{}", ours.key);
        }
    }

    fn tempfile_dir() -> String {
        let dir = std::env::temp_dir().join(format!("rask-codec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.display().to_string()
    }
}
