//! The `futures` suite: the walkthrough's general-compute half timed on the
//! local cluster and on a scheduler with 2 worker processes.
//!
//! - the 650 `add_two_people` calls over all ordered pairs of 26 people;
//! - `--tasks` no-op `submit`s and their `gather`, in tasks per second;
//! - scattering a 100 MB value, in GB/s, next to a `memcpy` of it;
//! - with `--peers`, the same on Dask (`benches/peers/people_dask.py`).
//!
//! The worker processes are this binary run as `rask` (see [`as_rask`]), so
//! they carry the functions below.

use std::time::{Duration, Instant};

use rask::udf::Registry;

use crate::{ProcessCluster, Stats, peer_script};

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

/// The length of a scattered value, to read it in a task (its argument is
/// the scattered type itself, as a task function's must be).
#[allow(clippy::ptr_arg)]
fn length(bytes: &Vec<u8>) -> usize {
    bytes.len()
}

/// The functions the suite's workers carry.
pub fn registry() -> Registry {
    Registry::new()
        .with_function("add_two_people", people::add_two_people)
        .with_function("noop", noop)
        .with_function("length", length)
}

/// Runs this process as the `rask` command (scheduler, worker) with
/// [`registry`], if it was started as one.
pub fn as_rask() -> Option<std::process::ExitCode> {
    std::env::var_os(AS_RASK).map(|_| rask_cli::main_with(registry()))
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
pub async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let local = rask::LocalCluster::builder()
        .n_workers(2)
        .threads_per_worker(1)
        .config(rask::Config {
            registry: registry(),
            ..rask::Config::default()
        })
        .build()?;
    let client = local.client()?;
    println!("local cluster: 2 workers × 1 thread, in process");
    measure(&client, &options).await?;

    let me = std::env::current_exe()?;
    let cluster = ProcessCluster::start_with_env(&me, 2, 1, &[(AS_RASK, "1")])?;
    let remote = rask::Client::connect_with_registry(
        &cluster.address,
        rask::comm::Security::default(),
        registry(),
    )
    .await?;
    remote.wait_for_workers(2, Duration::from_secs(30)).await?;
    println!("\nscheduler + 2 worker processes × 1 thread");
    measure(&remote, &options).await?;
    drop(remote);
    drop(cluster);

    let size = 100 << 20;
    let source = vec![7u8; size];
    let copies = timed(options.runs, || {
        let copy = source.clone();
        std::hint::black_box(&copy);
        Ok(())
    })?;
    println!(
        "\nmemcpy of 100 MB: {:.2} ms, {:.1} GB/s",
        copies.median,
        gb_per_s(size, copies.median)
    );
    let encodes = timed(options.runs.min(5), || {
        let value = rask::exec::Value::new(source.clone());
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
        if let Some(people) = dask.times.get("people") {
            println!(
                "  650 add_two_people, end to end:       median {:8.1} ms ({:.1} – {:.1})",
                people.median, people.min, people.max
            );
        }
        if let (Some(noop), Some(tasks)) = (dask.times.get("noop"), dask.times.get("noop_tasks")) {
            println!(
                "  {} no-op submit + gather:           median {:8.1} ms, {:.0} tasks/s",
                tasks.median,
                noop.median,
                tasks.median / (noop.median / 1e3)
            );
        }
    }
    Ok(())
}

/// The suite's measurements on one cluster.
async fn measure(
    client: &rask::Client,
    options: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
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
    for run in 0..=options.runs {
        let started = Instant::now();
        let futures = add_two_people.map(pairs.iter().cloned());
        let sums: Vec<f64> = rask::gather(&futures).await?;
        let elapsed = started.elapsed();
        assert_eq!(sums.len(), 650);
        if run > 0 {
            times.push(elapsed);
        }
    }
    let people = Stats::of(&times);
    println!(
        "  650 add_two_people, end to end:       median {:8.2} ms ({:.2} – {:.2})",
        people.median, people.min, people.max
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
    Ok(())
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
