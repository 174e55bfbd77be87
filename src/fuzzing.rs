//! What `rask-fuzz` feeds hostile bytes to: each [`Target`] takes one input
//! the way a rask process takes bytes from the network (or a statement from a
//! user), and starts from real messages as seeds. Not part of the API.
//!
//! - [`PlanDecode`]: a stage as a worker receives it (`EncodedStage`, its
//!   plan, output partitioning, settings and subquery values), decoded as the
//!   worker does, allowlist and panic guard included.
//! - [`Control`]: a control-stream frame, decoded as each of its readers
//!   does (scheduler, worker, client).
//! - [`FlightCalls`]: a Flight ticket to a worker's `do_get` and an action to
//!   the scheduler's `do_action`, called on the real services.
//! - [`SqlFrontEnd`]: a `rask query` script: split into statements, each
//!   planned (logically and physically, cut into stages) on a local cluster;
//!   nothing runs.
//!
//! The PostgreSQL server is fuzzed from outside, over a socket (see
//! `rask-fuzz`).

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{Action, Ticket};
use datafusion::execution::TaskContext;
use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::comm::codec::{decode_stage, encode_stage};
use crate::comm::flight::FlightNode;
use crate::comm::wire::{
    self, EncodedStage, EncodedTask, FromClient, FromWorker, Hello, ToClient, ToWorker,
};
use crate::comm::{EncodedJob, SchedulerNode, SchedulerOptions};
use crate::exec::{TaskData, Value};
use crate::net::Security;
use crate::planner::StageGraph;
use crate::worker::{DataStore, Peers};
use crate::{Client, Config, Key, Result};

/// One thing to fuzz.
pub trait Target {
    /// Real inputs to start mutating from.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Takes one input; a panic that escapes is a crash.
    fn run(&mut self, input: &[u8]);
    /// Fragments worth splicing into inputs (SQL keywords, say).
    fn dictionary(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// What else the run saw, for its summary.
    fn notes(&self) -> String {
        String::new()
    }
}

/// Queries whose stages make the seeds of [`PlanDecode`] and [`Control`]:
/// scans, filters, aggregates, joins, windows, sorts, limits, unions.
const SEED_QUERIES: &[&str] = &[
    "SELECT name, count(*), max(x), avg(y) FROM timeseries('2000-01-01', '2000-01-03') GROUP BY name ORDER BY name",
    "SELECT a.name, a.n, b.m FROM (SELECT name, count(*) AS n FROM timeseries('2000-01-01', '2000-01-02') GROUP BY name) a JOIN (SELECT name, max(x) AS m FROM timeseries('2000-01-01', '2000-01-02') GROUP BY name) b ON a.name = b.name",
    "SELECT id, x, row_number() OVER (PARTITION BY name ORDER BY timestamp) AS r FROM timeseries('2000-01-01', '2000-01-02') WHERE x > 0.5 LIMIT 10",
    "SELECT DISTINCT name FROM timeseries('2000-01-01', '2000-01-02') UNION ALL SELECT 'x' ORDER BY 1",
    "SELECT count(*) FROM (VALUES (1, 'a'), (2, 'b')) t(a, b) WHERE b LIKE 'a%' AND a IN (1, 3)",
    "SELECT upper(name), CASE WHEN x > 0 THEN 1 ELSE 0 END, CAST(id AS DOUBLE) / 3 FROM timeseries('2000-01-01', '2000-01-02') ORDER BY id DESC LIMIT 5",
];

/// The stages of each seed query, encoded as workers receive them.
fn seed_stages(client: &Client, runtime: &Runtime) -> Result<Vec<EncodedStage>> {
    let mut stages = Vec::new();
    for sql in SEED_QUERIES {
        let plan = runtime.block_on(async {
            let frame = client.session().sql(sql).await?;
            let state = client.session().state();
            let logical = state.optimize(frame.logical_plan())?;
            let plan = datafusion::physical_planner::DefaultPhysicalPlanner::default();
            datafusion::physical_planner::PhysicalPlanner::create_physical_plan(
                &plan, &logical, &state,
            )
            .await
        })?;
        let config = Arc::new(client.session().state().config().clone());
        let Ok(graph) = StageGraph::cut(plan, config) else {
            continue;
        };
        for stage in &graph.stages {
            stages.push(encode_stage(stage, sql)?);
        }
    }
    Ok(stages)
}

/// A small local cluster for planning, and a runtime to plan on.
fn local() -> Result<(Client, Runtime)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Comm(format!("a runtime: {e}")))?;
    let config = Config {
        threads: 2,
        dashboard: None,
        ..Config::default()
    };
    let client = {
        let _entered = runtime.enter();
        Client::with_config(config)?
    };
    Ok((client, runtime))
}

/// Stages as a worker receives them, decoded as it does.
pub struct PlanDecode {
    seeds: Vec<EncodedStage>,
    task: Arc<TaskContext>,
    _client: Client,
    _runtime: Runtime,
}

impl PlanDecode {
    /// Plans the seed queries.
    pub fn new() -> Result<Self> {
        let (client, runtime) = local()?;
        let seeds = seed_stages(&client, &runtime)?;
        let task = crate::exec::new_context(&Default::default(), None)?.task_ctx();
        Ok(Self {
            seeds,
            task,
            _client: client,
            _runtime: runtime,
        })
    }
}

impl Target for PlanDecode {
    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.iter().map(wire::encode).collect()
    }

    fn run(&mut self, input: &[u8]) {
        if let Ok(stage) = wire::decode::<EncodedStage>(input, "stage") {
            let _ = decode_stage(&stage, &self.task);
        }
        // The plan bytes alone, as datafusion-proto reads them.
        let bare = EncodedStage {
            id: "fuzz".into(),
            number: 0,
            plan: input.to_vec(),
            output: None,
            config: Vec::new(),
            subqueries: Vec::new(),
        };
        let _ = decode_stage(&bare, &self.task);
    }
}

/// Control-stream frames, decoded as each reader does.
pub struct Control {
    seeds: Vec<Vec<u8>>,
}

impl Control {
    /// Frames of real messages, tasks with real stages among them.
    pub fn new() -> Result<Self> {
        let (client, runtime) = local()?;
        let stages = seed_stages(&client, &runtime)?;
        let key = |s: &str| Key::new(s);
        let mut seeds = Vec::new();
        let mut frame = |bytes: arrow_flight::FlightData| seeds.push(bytes.app_metadata.to_vec());
        frame(wire::frame(&[Hello::Client {
            version: wire::PROTOCOL_VERSION,
        }]));
        frame(wire::frame(&[Hello::Worker {
            version: wire::PROTOCOL_VERSION,
            info: crate::cluster::WorkerInfo {
                id: 0,
                name: "w".into(),
                address: "127.0.0.1:4000".into(),
                nthreads: 2,
                memory_limit: Some(1 << 30),
                local_directory: "/tmp/w".into(),
                pid: Some(7),
                functions: vec!["f".into()],
                nanny: None,
            },
        }]));
        for (i, stage) in stages.into_iter().enumerate() {
            let job = EncodedJob::Stage {
                stage: Arc::new(stage),
                partition: 0,
                inputs: vec![(0, vec![key("scan-00aa-0"), key("scan-00aa-1")])],
            };
            let task = EncodedTask {
                key: key(&format!("stage-00aa-{i}")),
                dependencies: vec![key("scan-00aa-0")],
                priority: 1,
                retries: 0,
                workers: None,
                functions: Vec::new(),
                parts: vec![2],
                job: job.clone(),
            };
            frame(wire::frame(&[FromClient::Submit {
                tasks: vec![task.clone()],
                wanted: vec![task.key.clone()],
            }]));
            frame(wire::frame(&[ToWorker::Run {
                key: task.key,
                job: Arc::new(job),
                inputs: vec![wire::RunInput {
                    key: key("scan-00aa-0"),
                    nbytes: 4096,
                    holders: vec![(0, "127.0.0.1:4000".into())],
                }],
            }]));
        }
        frame(wire::frame(&[
            FromClient::Release {
                key: key("stage-00aa-0"),
            },
            FromClient::Cancel {
                keys: vec![key("a"), key("b")],
            },
        ]));
        frame(wire::frame(&[FromWorker::Finished {
            key: key("stage-00aa-0"),
            nbytes: 100,
            micros: 5,
        }]));
        frame(wire::frame(&[
            ToClient::Alive,
            ToClient::Close {
                reason: "bye".into(),
            },
        ]));
        Ok(Self { seeds })
    }
}

impl Target for Control {
    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.clone()
    }

    fn run(&mut self, input: &[u8]) {
        let data = arrow_flight::FlightData {
            app_metadata: input.to_vec().into(),
            ..Default::default()
        };
        let _ = wire::unframe::<Hello>(&data, "hello");
        let _ = wire::unframe::<FromClient>(&data, "client message");
        let _ = wire::unframe::<FromWorker>(&data, "worker message");
        let _ = wire::unframe::<ToWorker>(&data, "scheduler message");
        let _ = wire::unframe::<ToClient>(&data, "scheduler message");
    }
}

/// A worker's `do_get` and a scheduler's `do_action`, called on the real
/// services (the token check, which comes first, is tested elsewhere).
pub struct FlightCalls {
    worker: FlightNode,
    scheduler: FlightNode,
    _node: SchedulerNode,
    runtime: Runtime,
    seeds: Vec<Vec<u8>>,
}

impl FlightCalls {
    /// A scheduler on a free port of 127.0.0.1, and a worker's service whose
    /// store holds a value and a table of two buckets.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| crate::Error::Comm(format!("a runtime: {e}")))?;
        let node = runtime.block_on(SchedulerNode::start(SchedulerOptions {
            port: 0,
            ..SchedulerOptions::default()
        }))?;
        let store = Arc::new(DataStore::default());
        store.insert(
            Key::new("value-00aa-0"),
            Arc::new(TaskData::Value(Value::new(42u64))),
        );
        let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter([(
            "x",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2, 3])) as _,
        )])
        .map_err(datafusion::error::DataFusionError::from)?;
        store.insert(
            Key::new("table-00aa-0"),
            Arc::new(TaskData::Batches(vec![vec![batch.clone()], vec![batch]])),
        );
        let peers = Arc::new(Peers::default());
        peers.insert(0, Arc::clone(&store));
        let worker = FlightNode {
            security: Security::default(),
            results: Some(peers),
            store: Some(store),
            control: None,
        };
        let ticket = |keys: &[&str], bucket, by_bucket| {
            wire::encode(&wire::FetchTicket {
                keys: keys.iter().map(|k| Key::new(*k)).collect(),
                bucket,
                by_bucket,
            })
        };
        let death = wire::encode(&wire::WorkerDeath {
            pid: 1234,
            status: "signal: 9 (SIGKILL)".into(),
            log: vec!["a line".into()],
        });
        // A seed is a tag byte (0: ticket, 1: action) then the body.
        let mut seeds = Vec::new();
        for body in [
            ticket(&["value-00aa-0"], None, false),
            ticket(&["table-00aa-0", "value-00aa-0"], Some(1), false),
            ticket(&["table-00aa-0"], None, true),
        ] {
            seeds.push([vec![0], body].concat());
        }
        seeds.push([vec![1], death].concat());
        Ok(Self {
            scheduler: node.flight_node(),
            worker,
            _node: node,
            runtime,
            seeds,
        })
    }
}

impl Target for FlightCalls {
    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.clone()
    }

    fn run(&mut self, input: &[u8]) {
        let Some((tag, body)) = input.split_first() else {
            return;
        };
        let (worker, scheduler) = (&self.worker, &self.scheduler);
        self.runtime.block_on(async {
            if tag % 2 == 0 {
                let ticket = Ticket {
                    ticket: body.to_vec().into(),
                };
                if let Ok(response) = worker.do_get(tonic::Request::new(ticket)).await {
                    let mut frames = response.into_inner();
                    while frames.next().await.is_some() {}
                }
            } else {
                let action = Action {
                    r#type: wire::WORKER_DIED.into(),
                    body: body.to_vec().into(),
                };
                let _ = scheduler.do_action(tonic::Request::new(action)).await;
            }
        });
    }
}

/// `rask query` scripts, split and planned on a local cluster.
pub struct SqlFrontEnd {
    client: Client,
    runtime: Runtime,
}

impl SqlFrontEnd {
    /// A local cluster of one worker, and a table `t` to plan against.
    pub fn new() -> Result<Self> {
        let (client, runtime) = local()?;
        runtime.block_on(async {
            client
                .sql("CREATE TABLE t AS SELECT * FROM timeseries('2000-01-01', '2000-01-01 00:10:00')")
                .await
        })?;
        Ok(Self { client, runtime })
    }
}

impl Target for SqlFrontEnd {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = SEED_QUERIES.iter().map(|q| q.as_bytes().to_vec()).collect();
        seeds.extend(
            [
                "SELECT * FROM t WHERE name = 'Alice' AND x BETWEEN -0.5 AND 0.5;\nSELECT count(*) FROM t;",
                "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/nonexistent/p.csv'; SELECT * FROM p",
                "COPY (SELECT 1 AS a) TO '/nonexistent/out.parquet'",
                "EXPLAIN SELECT name, sum(x) FROM t GROUP BY ROLLUP(name)",
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
                "SELECT struct(1, 'a'), [1, 2, 3][2], make_array(x, y), date_trunc('hour', timestamp) FROM t",
                "SELECT * FROM t t1 LEFT JOIN t t2 USING (id) WHERE t1.x > (SELECT avg(x) FROM t)",
                "-- a comment\nSELECT 'it''s', $$dollar$$, E'\\n', 1e-3, 0x1F, NULL::INT /* block */;",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec()),
        );
        seeds
    }

    fn run(&mut self, input: &[u8]) {
        let script = String::from_utf8_lossy(input);
        let Ok(statements) = crate::planner::split_statements(&script) else {
            return;
        };
        let session = self.client.session();
        self.runtime.block_on(async {
            for statement in statements.iter().take(8) {
                // As `Client::sql` and `DataFrame::collect` plan: DataFusion's
                // panics contained, as errors.
                let state = session.state();
                let logical =
                    crate::error::catch_panics(state.create_logical_plan(&statement.text)).await;
                let Ok(Ok(logical)) = logical else {
                    continue;
                };
                // Planning may take long on a hostile statement; it is bounded
                // here so the fuzzer moves on (a hang shows as a slow input).
                let planned = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    crate::error::catch_panics(state.create_physical_plan(&logical)),
                )
                .await;
                if planned.is_err() {
                    tracing::warn!("planning took over 5 s: {:?}", statement.text);
                }
            }
        });
    }

    fn dictionary(&self) -> Vec<Vec<u8>> {
        [
            "SELECT ",
            " FROM ",
            " WHERE ",
            " GROUP BY ",
            " ORDER BY ",
            " LIMIT ",
            " JOIN ",
            " ON ",
            " UNION ",
            " OVER (",
            "PARTITION BY ",
            ")",
            "(",
            ",",
            "'",
            "\"",
            ";",
            " CAST(",
            " AS ",
            "INT",
            "DOUBLE",
            "VARCHAR",
            "TIMESTAMP",
            " NULL",
            " IS NOT ",
            "timeseries(",
            "'2000-01-01'",
            "'1s'",
            " t ",
            "*",
            "count(",
            "sum(",
            "avg(",
            "[",
            "]",
            "{",
            "}",
            "::",
            "$1",
            " IN (",
            " CASE WHEN ",
            " THEN ",
            " END",
            " EXISTS (",
            " WITH ",
            " VALUES ",
            "-9223372036854775808",
            "1e308",
            "''",
            "unnest(",
            "range(",
            "generate_series(",
            "regexp_replace(",
            "'%'",
            " LIKE ",
            " DISTINCT ",
            " HAVING ",
            " CROSS JOIN ",
            " NATURAL JOIN ",
            "/*",
            "*/",
            "--",
            "\n",
            "COPY ",
            " TO ",
            "CREATE ",
            "TABLE ",
            "EXTERNAL ",
            "STORED AS ",
            "LOCATION ",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }
}
