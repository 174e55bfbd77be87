//! Function tasks: the `futures` and `scheduler` suites, and the walkthrough's
//! general-compute steps.
//!
//! `futures`, on the local cluster and on a scheduler with 2 worker processes:
//! - the 650 `add_two_people` calls over all ordered pairs of 26 people;
//! - `--tasks` no-op `submit`s and their `gather`, in tasks per second;
//! - scattering a 100 MB value, in GB/s, next to a `memcpy` of it;
//! - with `--peers`, the same on Dask (`benches/peers/people_dask.py`).
//!
//! `scheduler`: graphs of no-op tasks by shape (independent, chain, fan-in
//! tree, all-to-all shuffle) and size, submitted whole and gathered, `--runs`
//! times after a warm-up graph.
//!
//! The worker processes are this binary run as `rask` (see [`as_rask`] and
//! [`processes`]), so they carry the functions below, and the walkthrough's
//! scalar UDF `square`.

use std::time::{Duration, Instant};

use rask::udf::Registry;

use crate::report::Report;
use crate::timing::settle;
use crate::{ProcessCluster, Stats, describe_peaks, peak_memory, peer_script};

/// The walkthrough's `Person` and `add_two_people`, as `examples/people.rs`
/// has them (its linfa model is left out: it would change the features this
/// binary's dependencies build with).
mod people {
    /// Someone with a personal value.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Person {
        pub name: String,
        pub personal_value: f64,
    }

    /// `a.personal_value + b.personal_value`.
    pub fn add_two_people(a: &Person, b: &Person) -> f64 {
        a.personal_value + b.personal_value
    }
}

/// The environment variable that makes this binary the `rask` command.
pub const AS_RASK: &str = "RASK_BENCH_AS_RASK";

/// A no-op task function.
fn noop(i: &u64) -> u64 {
    *i
}

/// No-op tasks of the scheduler suite's graphs, by their number of inputs.
fn leaf() -> u64 {
    1
}

fn sum2(a: &u64, b: &u64) -> u64 {
    a + b
}

fn sum4(a: &u64, b: &u64, c: &u64, d: &u64) -> u64 {
    a + b + c + d
}

/// The walkthrough's stand-in for its fitted model: a line, scattered once
/// and used for each prediction (`examples/people.rs` fits a real one with
/// linfa, which this binary leaves out to keep its dependencies' features).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Line {
    slope: f64,
    intercept: f64,
}

fn predict(model: &Line, x: &f64) -> f64 {
    model.slope * x + model.intercept
}

/// The length of a scattered value, to read it in a task (its argument is
/// the scattered type itself, as a task function's must be).
#[allow(clippy::ptr_arg)]
fn length(bytes: &Vec<u8>) -> usize {
    bytes.len()
}

/// The walkthrough's scalar UDF for `apply`: `x * x`.
pub fn square() -> rask::datafusion::logical_expr::ScalarUDF {
    rask::udf::scalar("square", |x: f64| x * x)
}

/// The functions the suite's workers carry, and the walkthrough's [`square`].
pub fn registry() -> Registry {
    Registry::new()
        .with_scalar(square())
        .with_function("add_two_people", people::add_two_people)
        .with_function("noop", noop)
        .with_function("length", length)
        .with_function("leaf", leaf)
        .with_function("pass", noop)
        .with_function("sum2", sum2)
        .with_function("sum4", sum4)
        .with_function("predict", predict)
}

/// Runs this process as the `rask` command (scheduler, worker) with
/// [`registry`], if it was started as one.
pub fn as_rask() -> Option<std::process::ExitCode> {
    std::env::var_os(AS_RASK).map(|_| rask_cli::main_with(registry()))
}

/// A client of a local cluster of `workers` × `threads` carrying [`registry`].
fn local_cluster(workers: usize, threads: usize) -> rask::Result<rask::Client> {
    rask::Client::with_config(rask::Config {
        workers,
        threads,
        registry: registry(),
        ..rask::Config::default()
    })
}

/// A scheduler and `workers` worker processes × `threads`, all this binary
/// run as `rask` (so they carry [`registry`]), and a client of it with the
/// same registry, once the workers are up.
pub async fn processes(
    workers: usize,
    threads: usize,
) -> Result<(ProcessCluster, rask::Client), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let cluster = ProcessCluster::start_program_with_env(
        &me,
        std::path::Path::new("."),
        workers,
        threads,
        &[(AS_RASK, "1")],
    );
    let client = rask::Client::connect_with_registry(
        &cluster.address,
        rask::internals::net::Security::default(),
        registry(),
    )
    .await?;
    client
        .wait_for_workers(workers, Duration::from_secs(30))
        .await?;
    Ok((cluster, client))
}

/// Options of the suite.
pub struct Options {
    /// Runs per measurement.
    pub runs: usize,
    /// No-op tasks submitted and gathered per run.
    pub tasks: usize,
    /// Also run Dask.
    pub peers: bool,
}

/// Runs the suite.
pub async fn run(options: Options, report: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let client = local_cluster(2, 1)?;
    println!("local cluster: 2 workers × 1 thread, in process");
    measure(&client, &options, "local cluster", report).await?;

    let (cluster, remote) = processes(2, 1).await?;
    println!("\nscheduler + 2 worker processes × 1 thread");
    measure(&remote, &options, "2 worker processes", report).await?;
    println!("  peak memory: {}", describe_peaks(&cluster));
    let peaks = peak_memory(&cluster);
    if let Some(row) = report.row("650 add_two_people, 2 worker processes", "rask") {
        row.peak_memory = peaks;
    }
    drop(remote);
    drop(cluster);

    let size = 100 << 20;
    let source = vec![7u8; size];
    // A destination touched once beforehand: the copy is timed, not the page
    // faults of fresh memory.
    let mut destination = vec![0u8; size];
    destination.fill(1);
    let copies = timed(options.runs, || {
        destination.copy_from_slice(&source);
        std::hint::black_box(destination.as_slice());
        Ok(())
    })?;
    println!(
        "\nmemcpy of 100 MB into memory already touched: {:.2} ms, {:.1} GB/s",
        copies.median,
        gb_per_s(size, copies.median)
    );
    let row = report.add_stats("memcpy of 100 MB", "memcpy", copies, options.runs);
    row.figures
        .push(("GB_per_s".into(), gb_per_s(size, copies.median)));
    let encodes = timed(options.runs.min(5), || {
        let value = rask::Value::new(source.clone());
        std::hint::black_box(value.bytes()?);
        Ok(())
    })?;
    println!(
        "copy + postcard encoding of the 100 MB value (what a remote scatter starts with): {:.2} ms",
        encodes.median
    );

    if options.peers
        && let Some(dask) = peer_script(
            "dask.distributed",
            "people_dask.py",
            &[options.runs.min(5).to_string()],
        )?
    {
        println!(
            "\nDask {} on a LocalCluster of 2 processes × 1 thread",
            dask.version
        );
        let engine = format!("Dask {}", dask.version);
        if let Some(people) = dask.times.get("people") {
            println!(
                "  650 add_two_people, end to end:       median {:8.1} ms ({:.1} – {:.1})",
                people.median, people.min, people.max
            );
            report.add_stats(
                "650 add_two_people, 2 worker processes",
                &engine,
                *people,
                0,
            );
        }
        if let (Some(noop), Some(tasks)) = (dask.times.get("noop"), dask.times.get("noop_tasks")) {
            println!(
                "  {} no-op submit + gather:           median {:8.1} ms, {:.0} tasks/s",
                tasks.median,
                noop.median,
                tasks.median / (noop.median / 1e3)
            );
            let row = report.add_stats(
                "no-op submit + gather, 2 worker processes",
                &engine,
                *noop,
                0,
            );
            row.figures.push(("tasks".into(), tasks.median));
            row.figures.push((
                "tasks_per_second".into(),
                tasks.median / (noop.median / 1e3),
            ));
        }
    }
    Ok(())
}

/// The suite's measurements on one cluster.
async fn measure(
    client: &rask::Client,
    options: &Options,
    cluster: &str,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let people = people_calls(client, options.runs).await?;
    println!(
        "  650 add_two_people, end to end:       median {:8.2} ms ({:.2} – {:.2})",
        people.median, people.min, people.max
    );
    report.add_stats(
        &format!("650 add_two_people, {cluster}"),
        "rask",
        people,
        options.runs,
    );

    let noop = client.register("noop", noop)?;
    let mut times = Vec::new();
    let mut split = (Vec::new(), Vec::new());
    for run in 0..=options.runs.min(5) {
        let started = Instant::now();
        let futures = noop.map((0..options.tasks as u64).map(|i| (i,)));
        let submitted = started.elapsed();
        rask::wait(&futures).await;
        let done = started.elapsed();
        let values: Vec<u64> = rask::gather(&futures).await?;
        let elapsed = started.elapsed();
        assert_eq!(values.len(), options.tasks);
        drop(futures);
        if run > 0 {
            times.push(elapsed);
            split.0.push(submitted);
            split.1.push(done);
        }
        // Let the cluster forget the run before the next.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let noops = Stats::of(&times);
    let row = report.add(&format!("no-op submit + gather, {cluster}"), "rask", &times);
    row.figures.push(("tasks".into(), options.tasks as f64));
    row.figures.push((
        "tasks_per_second".into(),
        options.tasks as f64 / (noops.median / 1e3),
    ));
    println!(
        "  {} no-op submit + gather:         median {:8.1} ms, {:.0} tasks/s (submitted after {:.1} ms, all done after {:.1} ms)",
        options.tasks,
        noops.median,
        options.tasks as f64 / (noops.median / 1e3),
        Stats::of(&split.0).median,
        Stats::of(&split.1).median,
    );

    let size = 100 << 20;
    let length = client.register("length", length)?;
    let mut times = Vec::new();
    for run in 0..=options.runs.min(5) {
        let value = vec![7u8; size];
        let started = Instant::now();
        let scattered = client.scatter(value).await?;
        let elapsed = started.elapsed();
        let read: usize = length.submit((&scattered,)).value().await?;
        assert_eq!(read, size);
        if run > 0 {
            times.push(elapsed);
        }
    }
    let scatter = Stats::of(&times);
    println!(
        "  scatter of 100 MB:                    median {:8.2} ms, {:.1} GB/s",
        scatter.median,
        gb_per_s(size, scatter.median)
    );
    let row = report.add(&format!("scatter of 100 MB, {cluster}"), "rask", &times);
    row.figures
        .push(("GB_per_s".into(), gb_per_s(size, scatter.median)));
    Ok(())
}

/// The 650 `add_two_people` calls over all ordered pairs of 26 people,
/// `runs` times after a warm-up.
async fn people_calls(
    client: &rask::Client,
    runs: usize,
) -> Result<Stats, Box<dyn std::error::Error>> {
    let add_two_people = client.register("add_two_people", people::add_two_people)?;
    let list: Vec<people::Person> = (0..26u8)
        .map(|i| people::Person {
            name: ((b'A' + i) as char).to_string(),
            personal_value: f64::from(i) / 26.0,
        })
        .collect();
    let mut pairs = Vec::new();
    for a in &list {
        for b in list.iter().filter(|b| b.name != a.name) {
            pairs.push((a.clone(), b.clone()));
        }
    }
    let mut times = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        let futures = add_two_people.map(pairs.iter().cloned());
        let sums: Vec<f64> = rask::gather(&futures).await?;
        let elapsed = started.elapsed();
        if sums.len() != 650 {
            return Err(format!("650 calls gave {} sums", sums.len()).into());
        }
        if run > 0 {
            times.push(elapsed);
        }
    }
    Ok(Stats::of(&times))
}

/// The walkthrough's general-compute steps on the local cluster (2 workers ×
/// 1 thread, as Dask's peer runs): the 650 calls, and a model scattered
/// once for 10 predictions. Named as the Dask peer names them.
pub async fn walkthrough_steps(
    runs: usize,
    report: &mut Report,
) -> Result<Vec<(&'static str, Stats)>, Box<dyn std::error::Error>> {
    let client = local_cluster(2, 1)?;
    let people = people_calls(&client, runs).await?;
    let predict = client.register("predict", predict)?;
    let mut times = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        let model = client
            .scatter(Line {
                slope: 2.0,
                intercept: 1.0,
            })
            .await?;
        let futures = predict.map((0..10).map(|i| (&model, f64::from(i))));
        let predictions: Vec<f64> = rask::gather(&futures).await?;
        if predictions.len() != 10 || predictions[3] != 7.0 {
            return Err(format!("unexpected predictions {predictions:?}").into());
        }
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    let predictions = Stats::of(&times);
    for (what, stats) in [
        (
            "650 add_two_people (delayed calls), local cluster of 2 × 1",
            people,
        ),
        (
            "scatter a model + 10 predictions, local cluster of 2 × 1",
            predictions,
        ),
    ] {
        println!(
            "{what}\n  rask        median {:8.2} ms   ({:.2} – {:.2})",
            stats.median, stats.min, stats.max
        );
        report.add_stats(what, "rask", stats, runs);
    }
    Ok(vec![("people", people), ("predict", predictions)])
}

/// `f` timed `runs` times after a warm-up.
fn timed(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<Stats, Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        f()?;
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    Ok(Stats::of(&times))
}

fn gb_per_s(bytes: usize, ms: f64) -> f64 {
    bytes as f64 / (ms / 1e3) / 1e9
}

/// Which clusters the scheduler suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// The local cluster: one worker, in process.
    Local,
    /// The same, with a dashboard page's event stream open all along: what
    /// watching costs the scheduler.
    LocalWatched,
    /// A scheduler and 2 worker processes.
    Processes,
}

/// The graph shapes of the scheduler suite.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shape {
    /// Tasks with no inputs.
    Independent,
    /// Each task reads the one before.
    Chain,
    /// Leaves reduced pairwise to one root.
    FanInTree,
    /// Rounds of 4 tasks, each reading all 4 of the round before (all to all).
    Shuffle,
}

/// What the scheduler suite runs.
pub struct Graphs {
    /// Graph sizes, in tasks.
    pub sizes: Vec<usize>,
    /// Timed runs per shape and size.
    pub runs: usize,
    /// Threads in all.
    pub threads: usize,
    /// Graph shapes.
    pub shapes: Vec<Shape>,
    /// Clusters.
    pub clusters: Vec<ClusterKind>,
}

/// Width of the shuffle shape: the largest arity of a task function is 6.
const SHUFFLE_WIDTH: usize = 4;

/// How long the scheduler suite waits at most for the cluster to forget a
/// graph before the next.
const FORGET: Duration = Duration::from_secs(60);

/// The scheduler suite: each shape and size on each cluster, submitted as one
/// graph and gathered, `runs` times after a warm-up graph of the same shape
/// and the smallest size; the median and range of µs per task.
pub async fn scheduler(
    graphs: Graphs,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    for kind in &graphs.clusters {
        let mut watcher = None;
        let (client, cluster, label) = match kind {
            ClusterKind::Local | ClusterKind::LocalWatched => {
                let mut label = format!("local cluster, 1 worker × {} threads", graphs.threads);
                let client = local_cluster(1, graphs.threads)?;
                if *kind == ClusterKind::LocalWatched {
                    let link = client
                        .dashboard_link()
                        .ok_or("the local cluster has no dashboard")?;
                    watcher = Some(Watcher::start(&link)?);
                    label.push_str(", dashboard watched");
                }
                (client, None, label)
            }
            ClusterKind::Processes => {
                let per_worker = (graphs.threads / 2).max(1);
                let (cluster, client) = processes(2, per_worker).await?;
                let label = format!("scheduler + 2 worker processes × {per_worker} thread(s)");
                (client, Some(cluster), label)
            }
        };
        println!(
            "\nno-op function tasks on a {label}; {} run(s) each, medians\n",
            graphs.runs
        );
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>19} {:>14} {:>10}",
            "shape", "tasks", "seconds", "µs / task", "range µs / task", "tasks / s", "submit s"
        );
        let smallest = graphs.sizes.iter().copied().min().unwrap_or(1);
        for &shape in &graphs.shapes {
            for &n in &graphs.sizes {
                // A warm-up graph, untimed.
                run_graph(&client, shape, smallest).await?;
                let (mut times, mut submits) = (Vec::new(), Vec::new());
                let mut tasks = 0;
                for _ in 0..graphs.runs.max(1) {
                    let (count, took, submitted) = run_graph(&client, shape, n).await?;
                    tasks = count;
                    times.push(took);
                    submits.push(submitted);
                }
                let (took, submitted) = (Stats::of(&times), Stats::of(&submits));
                let per_task = |ms: f64| ms * 1e3 / tasks as f64;
                let per_second = tasks as f64 / (took.median / 1e3);
                println!(
                    "{:<12} {tasks:>10} {:>10.3} {:>10.2} {:>19} {per_second:>14.0} {:>10.3}",
                    format!("{shape:?}"),
                    took.median / 1e3,
                    per_task(took.median),
                    format!("{:.2} – {:.2}", per_task(took.min), per_task(took.max)),
                    submitted.median / 1e3,
                );
                let measurement = format!("{shape:?} graph of {tasks} no-op tasks, {label}");
                let row = report.add(&measurement, "rask", &times);
                row.figures.push(("tasks".into(), tasks as f64));
                row.figures.push(("tasks_per_second".into(), per_second));
                row.figures
                    .push(("submit_seconds".into(), submitted.median / 1e3));
            }
        }
        if let Some(watcher) = watcher {
            println!(
                "the dashboard pushed {} bytes of updates meanwhile",
                watcher.stop()
            );
        }
        if let Some(cluster) = &cluster {
            println!("peak memory: {}", describe_peaks(cluster));
        } else if let Some(peak) = crate::report::own_peak_memory() {
            println!(
                "peak memory of this process: {}",
                crate::report::format_memory(peak)
            );
        }
    }
    Ok(())
}

/// Submits a graph of about `n` no-op tasks of `shape` and gathers it; then,
/// untimed, lets the cluster forget it. Its number of tasks, the time to the
/// gathered results, and the time to submit.
async fn run_graph(
    client: &rask::Client,
    shape: Shape,
    n: usize,
) -> Result<(usize, Duration, Duration), Box<dyn std::error::Error>> {
    let (graph, wanted) = shape_graph(client.registry(), shape, n)?;
    let tasks = graph.len();
    let started = Instant::now();
    let futures = client.submit_graph(graph, &wanted);
    let submitted = started.elapsed();
    client.gather(&futures).await?;
    let took = started.elapsed();
    drop(futures);
    settle(client, FORGET).await?;
    Ok((tasks, took, submitted))
}

/// A graph of about `n` no-op tasks of `shape` calling the registered
/// functions, and the keys to want.
fn shape_graph(
    registry: &Registry,
    shape: Shape,
    n: usize,
) -> rask::Result<(rask::TaskGraph, Vec<rask::Key>)> {
    let mut graph = rask::TaskGraph::new();
    let n = n.max(1);
    let wanted = match shape {
        Shape::Independent => (0..n)
            .map(|_| graph.call(registry, "leaf", &[]))
            .collect::<rask::Result<Vec<_>>>()?,
        Shape::Chain => {
            let mut last = graph.call(registry, "leaf", &[])?;
            for _ in 1..n {
                last = graph.call(registry, "pass", &[last])?;
            }
            vec![last]
        }
        Shape::FanInTree => {
            // n/2 leaves, reduced pairwise to one root: about n tasks.
            let mut level = (0..n.div_ceil(2))
                .map(|_| graph.call(registry, "leaf", &[]))
                .collect::<rask::Result<Vec<_>>>()?;
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|pair| match pair {
                        [a, b] => graph.call(registry, "sum2", &[a.clone(), b.clone()]),
                        [a] => graph.call(registry, "pass", std::slice::from_ref(a)),
                        _ => unreachable!("chunks of 2"),
                    })
                    .collect::<rask::Result<Vec<_>>>()?;
            }
            level
        }
        Shape::Shuffle => {
            let mut round = (0..SHUFFLE_WIDTH)
                .map(|_| graph.call(registry, "leaf", &[]))
                .collect::<rask::Result<Vec<_>>>()?;
            for _ in 1..n.div_ceil(SHUFFLE_WIDTH) {
                round = (0..SHUFFLE_WIDTH)
                    .map(|_| graph.call(registry, "sum4", &round))
                    .collect::<rask::Result<Vec<_>>>()?;
            }
            round
        }
    };
    Ok((graph, wanted))
}

/// A dashboard page's event stream, read (and dropped) on a thread of its own.
struct Watcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Watcher {
    /// Opens `/api/v1/events` of the dashboard at `link`.
    fn start(link: &str) -> Result<Self, Box<dyn std::error::Error>> {
        use std::io::{Read, Write};
        let address = link
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut stream = std::net::TcpStream::connect(&address)?;
        write!(
            stream,
            "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 16];
            let mut read = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => read += n as u64,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            read
        });
        Ok(Self { stop, thread })
    }

    /// Closes the stream; the bytes it carried.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
