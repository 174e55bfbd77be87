//! [`ClusterLink`]: how a client reaches its cluster, in this process or over
//! the network, and [`stage_tasks`], the tasks a query's stages run as.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Answer, ClusterInfo, Question};
use crate::exec::StageOutput;
use crate::exec::{TaskData, Value};
use crate::key::Key;
use crate::planner::StageGraph;
use crate::scheduler::{TaskSpec, WorkerId};
use crate::worker::{EncodedJob, EncodedStage, Job, StageJob};

/// What a client tells its scheduler; jobs are in-process work until a remote
/// link encodes them.
pub type Message = crate::scheduler::Message<Job>;

/// How a client reaches its cluster: a scheduler in this process
/// (a local cluster) or one in another, over the network.
pub trait ClusterLink: Send + Sync {
    /// Queues `message` for the scheduler behind those queued before, without
    /// waiting for it to be handled.
    fn enqueue(&self, message: Message);

    /// Has what is queued handled (in-process) or sent on its way.
    fn drain(&self);

    /// Queues `message` and has it handled or sent.
    fn send(&self, message: Message) {
        self.enqueue(message);
        self.drain();
    }

    /// The result of `key` from one of `workers`.
    fn fetch(
        &self,
        key: &Key,
        workers: &[WorkerId],
    ) -> BoxFuture<'static, crate::Result<Arc<TaskData>>>;

    /// The results of `keys`, each from one of its holders: those of one
    /// worker in one request where the cluster can.
    fn fetch_many(
        &self,
        keys: &[(Key, Vec<WorkerId>)],
    ) -> BoxFuture<'static, crate::Result<Vec<Arc<TaskData>>>> {
        let fetches: Vec<_> = keys.iter().map(|(k, w)| self.fetch(k, w)).collect();
        Box::pin(futures::future::try_join_all(fetches))
    }

    /// Stores `value` under `key` on each of `workers`.
    fn put(
        &self,
        key: &Key,
        value: &Value,
        workers: &[WorkerId],
    ) -> BoxFuture<'static, crate::Result<()>>;

    /// The jobs of `graph` as this cluster's workers take them: in place, or
    /// encoded for another process (an error if some stage cannot be).
    fn tasks(&self, graph: &StageGraph) -> crate::Result<Vec<(TaskSpec, Arc<Job>)>>;

    /// The scheduler, its workers and its dashboard, as last heard.
    fn info(&self) -> ClusterInfo;

    /// The scheduler's answer to `question`.
    fn ask(&self, question: Question) -> BoxFuture<'static, crate::Result<Answer>>;
}

/// The tasks of `graph`, each with its job: the stage itself for workers in
/// this process, or `encoded` (one per stage) for workers in others.
pub fn stage_tasks(
    graph: &StageGraph,
    encoded: Option<&[Arc<EncodedStage>]>,
) -> Vec<(TaskSpec, Arc<Job>)> {
    let mut tasks = Vec::with_capacity(graph.task_count());
    for (s, stage) in graph.stages.iter().enumerate() {
        let inputs: Vec<(usize, Arc<[Key]>)> = stage
            .inputs
            .iter()
            .map(|&u| (u, graph.keys(u).into()))
            .collect();
        let dependencies: Vec<Key> = inputs
            .iter()
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        // A reader of a hashed output reads one bucket of each producer's.
        let parts: Vec<u32> = inputs
            .iter()
            .flat_map(|(u, keys)| {
                let parts = match graph.stages.get(*u).map(|s| &s.output) {
                    Some(StageOutput::Partitioned(p)) => p.partition_count() as u32,
                    _ => 1,
                };
                std::iter::repeat_n(parts, keys.len())
            })
            .collect();
        for partition in 0..stage.partitions() {
            let job = match encoded.and_then(|e| e.get(s)) {
                Some(encoded) => Job::Encoded(EncodedJob::Stage {
                    stage: Arc::clone(encoded),
                    partition: partition as u32,
                    inputs: inputs
                        .iter()
                        .map(|(u, k)| (*u as u32, k.to_vec()))
                        .collect(),
                }),
                None => Job::Stage(StageJob {
                    stage: Arc::clone(stage),
                    partition,
                    inputs: inputs.clone(),
                }),
            };
            let spec = TaskSpec {
                parts: parts.clone(),
                ..TaskSpec::new(graph.key(s, partition), dependencies.clone())
            };
            tasks.push((spec, Arc::new(job)));
        }
    }
    tasks
}
