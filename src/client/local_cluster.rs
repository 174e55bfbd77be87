//! [`LocalCluster`]: the scheduler and in-process workers, joined by channels.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Answer, ClusterInfo, Config, Question, WorkerInfo, WorkerState};
use crate::cluster::ClusterLink;
use crate::exec::{self, TaskData, Value};
use crate::key::Key;
use crate::planner::StageGraph;
use crate::scheduler::{EventLoop, Message, SchedulerHandle, TaskSpec, WorkerId};
use crate::worker::{DataStore, EventSink, Job, Peers, WorkSpace, Worker, WorkerMetrics};
use crate::{Error, Result};

/// A scheduler thread and workers in this process. Results pass between them
/// by reference: nothing is encoded or copied.
///
/// ```no_run
/// let cluster = rask::LocalCluster::builder().n_workers(2).threads_per_worker(1).build()?;
/// let client = cluster.client()?;
/// # Ok::<(), rask::Error>(())
/// ```
pub struct LocalCluster {
    server: EventLoop<Job>,
    peers: Arc<Peers>,
    config: Config,
    view: Arc<LocalView>,
    /// Stops the dashboard when dropped.
    _dashboard: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where the workers spill; removed with the cluster.
    _space: WorkSpace,
}

/// What the local cluster's dashboard and its questions read.
struct LocalView {
    server: EventLoop<Job>,
    peers: Arc<Peers>,
    info: ClusterInfo,
}

/// Sizes a [`LocalCluster`]; defaults come from [`Config::default`].
#[derive(Debug, Clone, Default)]
pub struct LocalClusterBuilder {
    config: Config,
}

impl LocalClusterBuilder {
    /// The number of workers.
    pub fn n_workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Task slots per worker.
    pub fn threads_per_worker(mut self, n: usize) -> Self {
        self.config.threads = n;
        self
    }

    /// Memory each worker's queries may hold before spilling.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.memory_limit = Some(bytes);
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Starts the scheduler and the workers.
    pub fn build(self) -> Result<Arc<LocalCluster>> {
        LocalCluster::start(self.config)
    }
}

impl LocalCluster {
    /// A builder, sized from this machine.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder::default()
    }

    fn start(config: Config) -> Result<Arc<Self>> {
        config.validate()?;
        let io = |e: std::io::Error| Error::Io {
            path: "<local cluster>".into(),
            source: e,
        };
        let server = EventLoop::new();
        let peers = Arc::new(Peers::default());
        // Where the workers spill: a folder of the cluster's own, removed with it.
        let parent = config
            .local_directory
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let space = WorkSpace::create(&parent).map_err(|source| Error::Io {
            path: parent.clone(),
            source,
        })?;
        for id in 0..config.workers as WorkerId {
            let scheduler = server.downgrade();
            let events: EventSink = Arc::new(move |event| scheduler.send(Message::Event(event)));
            let session = exec::new_context(&config.session_options(), None)?;
            config.registry.install(&session);
            let directory = space.path().to_path_buf();
            let store = DataStore::for_session(config.worker_memory_limit(), &directory, &session);
            let peers = Arc::clone(&peers);
            let worker =
                Worker::start_with_store(id, config.threads, &session, peers, events, store)
                    .map_err(io)?;
            server.send(Message::AddWorker(Arc::new(worker)));
        }
        let dashboard = match &config.dashboard {
            Some(address) => Some(crate::dashboard::bind_address(address, "127.0.0.1")?),
            None => None,
        };
        let view = Arc::new(LocalView {
            server: server.clone(),
            peers: Arc::clone(&peers),
            info: local_info(&config, dashboard.as_ref().map(|(_, link)| link.clone())),
        });
        let stop = match dashboard {
            Some((listener, _)) => Some(crate::dashboard::serve_in_thread(
                listener,
                Arc::clone(&view) as Arc<dyn crate::dashboard::ClusterView>,
            )?),
            None => None,
        };
        Ok(Arc::new(Self {
            server,
            peers,
            config,
            view,
            _dashboard: stop,
            _space: space,
        }))
    }

    /// A client of this cluster.
    pub fn client(self: &Arc<Self>) -> Result<super::Client> {
        super::Client::connect_local(Arc::clone(self))
    }

    /// How the cluster is sized.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many tasks the scheduler knows: pending, held, or kept for a
    /// dependent. Zero once every future is dropped and its release handled.
    pub fn tasks_known(&self) -> usize {
        self.server.task_count()
    }

    /// How many tasks have finished on this cluster since it started.
    pub fn tasks_finished(&self) -> u64 {
        self.server.tasks_finished()
    }

    /// How many results the workers hold, all together.
    pub fn results_held(&self) -> usize {
        self.peers.results_held()
    }
}

impl ClusterLink for LocalCluster {
    fn enqueue(&self, message: Message<Job>) {
        self.server.enqueue(message);
    }

    fn drain(&self) {
        self.server.drain();
    }

    fn fetch(&self, key: &Key, workers: &[WorkerId]) -> BoxFuture<'static, Result<Arc<TaskData>>> {
        let data = workers.iter().find_map(|w| self.peers.get(*w, key));
        let lost = Error::Lost(key.clone());
        Box::pin(async move { data.ok_or(lost) })
    }

    fn put(
        &self,
        key: &Key,
        value: &Value,
        workers: &[WorkerId],
    ) -> BoxFuture<'static, Result<()>> {
        // In process: the workers share the value itself, nothing is copied.
        let data = Arc::new(TaskData::Value(value.clone()));
        let missing = workers.iter().find_map(|&w| match self.peers.store(w) {
            Some(store) => {
                store.insert(key.clone(), Arc::clone(&data));
                None
            }
            None => Some(w),
        });
        let result = match missing {
            Some(w) => Err(Error::Comm(format!("cannot scatter {key}: no worker {w}"))),
            None => Ok(()),
        };
        Box::pin(async move { result })
    }

    fn tasks(&self, graph: &StageGraph) -> Result<Vec<(TaskSpec, Arc<Job>)>> {
        Ok(crate::cluster::stage_tasks(graph, None))
    }

    fn info(&self) -> ClusterInfo {
        self.view.info.clone()
    }

    fn ask(&self, question: Question) -> BoxFuture<'static, Result<Answer>> {
        let answer = question.answer(&self.server, || self.view.worker_states());
        Box::pin(std::future::ready(Ok(answer)))
    }
}

/// The local cluster as its clients and dashboard see it.
fn local_info(config: &Config, dashboard: Option<String>) -> ClusterInfo {
    let memory_limit = config.worker_memory_limit().map(|m| m as u64);
    let local_directory = config
        .local_directory
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .display()
        .to_string();
    ClusterInfo {
        scheduler: crate::cluster::IN_PROCESS.into(),
        dashboard,
        workers: (0..config.workers)
            .map(|id| WorkerInfo {
                id: id as WorkerId,
                name: format!("local-{id}"),
                address: crate::cluster::IN_PROCESS.into(),
                nthreads: config.threads,
                memory_limit,
                functions: config.registry.names(),
                local_directory: local_directory.clone(),
                pid: None,
                nanny: None,
            })
            .collect(),
    }
}

impl LocalView {
    /// Every worker now, read from its store and the scheduler; what the
    /// workers moved since the last look goes into the task stream.
    fn worker_states(&self) -> Vec<WorkerState> {
        self.info
            .workers
            .iter()
            .map(|info| {
                let status = self.server.worker(info.id);
                let metrics = match self.peers.store(info.id) {
                    Some(store) => {
                        self.server
                            .note_marks(info.id, store.activity().take_marks());
                        let mut metrics = store.metrics(0);
                        // Sent to the worker and not running: queued there.
                        let processing = status.as_ref().map_or(0, |s| s.processing as u64);
                        metrics.ready = processing.saturating_sub(metrics.executing);
                        metrics
                    }
                    None => WorkerMetrics::default(),
                };
                WorkerState::new(info.clone(), metrics, status, None)
            })
            .collect()
    }
}

impl crate::dashboard::ClusterView for LocalView {
    fn info(&self) -> ClusterInfo {
        self.info.clone()
    }

    fn workers(&self) -> Vec<WorkerState> {
        self.worker_states()
    }

    fn scheduler(&self) -> &dyn SchedulerHandle {
        &self.server
    }
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalCluster(workers={}, threads per worker={})",
            self.config.workers, self.config.threads
        )
    }
}
