//! The `chaos` suite: TPC-H's 22 queries in a loop on a scheduler with two
//! worker processes while a random worker process is killed (`kill -9`) every
//! `--kill-every` seconds. Every answer is checked against bare DataFusion's;
//! the time of a loop is set beside that of a loop without kills, and the peak
//! memory of every process (restarted workers included) is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::report::{self, Report};
use crate::tpch::{answers, data};
use crate::{ProcessCluster, bare_datafusion, peak_memory, sibling};

/// How the suite runs.
pub struct Options {
    /// How long the loop with kills runs.
    pub minutes: f64,
    /// Seconds between kills.
    pub kill_every: f64,
    /// Scale factor.
    pub sf: f64,
    /// Threads in all (split over the two workers).
    pub threads: usize,
    /// Where the data is generated once and kept.
    pub data: PathBuf,
}

/// What one pass over the queries found.
#[derive(Default)]
struct Tally {
    run: usize,
    right: usize,
    wrong: Vec<String>,
    failed: Vec<String>,
}

pub async fn run(options: Options, report: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let Options {
        minutes,
        kill_every,
        sf,
        threads,
        ref data,
    } = options;
    let dir = data.join(format!("tpch-sf{sf}"));
    let dir = std::fs::canonicalize(data::generate(&dir, sf, (threads * 2) as i32)?)?;
    let query_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/queries");
    let queries = data::queries(&query_dir)?;

    // The answers to check against: bare DataFusion's.
    let ctx = bare_datafusion(threads);
    for statement in data::create_tables(&dir) {
        ctx.sql(&statement).await?.collect().await?;
    }
    let mut expected = BTreeMap::new();
    for (name, sql) in &queries {
        let batches = ctx.sql(sql).await?.collect().await?;
        expected.insert(name.clone(), answers::rows(&batches)?);
    }

    let rask_bin = sibling("rask")?;
    let per_worker = (threads / 2).max(1);
    let cluster = ProcessCluster::start_program(&rask_bin, Path::new("."), 2, per_worker);
    let client = rask::Client::connect(&cluster.address).await?;
    client.wait_for_workers(2, Duration::from_secs(30)).await?;
    for statement in data::create_tables(&dir) {
        client.sql(&statement).await?.collect().await?;
    }
    println!(
        "TPC-H SF{sf}, 22 queries in a loop: scheduler + 2 worker processes × {per_worker} thread(s); a worker killed every {kill_every} s for {minutes} min"
    );

    // One pass without kills: the time to compare with.
    let mut calm = Tally::default();
    let started = Instant::now();
    pass(&client, &queries, &expected, &mut calm).await;
    let calm_pass = started.elapsed();
    println!(
        "without kills: one pass in {:.1} s, {}/{} answers right",
        calm_pass.as_secs_f64(),
        calm.right,
        calm.run
    );

    // The loop with kills, a killer beside it.
    let peaks = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let kills = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (nanny, peaks, kills, stop) = (
            cluster.workers.pid(),
            Arc::clone(&peaks),
            Arc::clone(&kills),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
            while !stop.load(Ordering::Relaxed) {
                let until = Instant::now() + Duration::from_secs_f64(kill_every);
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let workers = report::children_of(nanny);
                note_peaks(&workers, &peaks);
                if workers.is_empty() {
                    continue;
                }
                // xorshift: a different victim each time, no dependency for it.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let victim = workers[(seed % workers.len() as u64) as usize];
                let _ = std::process::Command::new("kill")
                    .args(["-9", &victim.to_string()])
                    .status();
                kills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut chaos = Tally::default();
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let mut passes = 0usize;
    while Instant::now() < deadline {
        pass(&client, &queries, &expected, &mut chaos).await;
        passes += 1;
        println!(
            "pass {passes}: {:.0} s in, {} kills, {}/{} answers right, {} wrong, {} failed",
            started.elapsed().as_secs_f64(),
            kills.load(Ordering::Relaxed),
            chaos.right,
            chaos.run,
            chaos.wrong.len(),
            chaos.failed.len()
        );
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = killer.join();
    note_peaks(&report::children_of(cluster.workers.pid()), &peaks);
    let workers_seen = peaks.lock().map_or(BTreeMap::new(), |p| p.clone());
    let mut peaks: Vec<(String, u64)> = peak_memory(&cluster)
        .into_iter()
        .filter(|(role, _)| !role.starts_with("worker"))
        .collect();
    let highest = workers_seen.values().copied().max().unwrap_or(0);
    peaks.push((
        format!(
            "worker processes ({} in all, the highest)",
            workers_seen.len()
        ),
        highest,
    ));
    let chaos_pass = elapsed.as_secs_f64() / passes.max(1) as f64;
    println!(
        "\nwith kills: {passes} passes in {:.1} s ({chaos_pass:.1} s a pass, {:.2}× the pass without kills), {} kills; {} queries run, {} answers right, {} wrong, {} failed",
        elapsed.as_secs_f64(),
        chaos_pass / calm_pass.as_secs_f64(),
        kills.load(Ordering::Relaxed),
        chaos.run,
        chaos.right,
        chaos.wrong.len(),
        chaos.failed.len()
    );
    for what in chaos.wrong.iter().chain(&chaos.failed) {
        println!("  {what}");
    }
    println!(
        "peak memory: {}",
        peaks
            .iter()
            .map(|(role, peak)| format!("{role} {}", report::format_memory(*peak)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    report.add(
        "chaos: a pass of the 22 queries, no kills",
        "rask",
        &[calm_pass],
    );
    report.add(
        &format!("chaos: a pass of the 22 queries, a worker killed every {kill_every} s"),
        "rask",
        &[Duration::from_secs_f64(chaos_pass)],
    );
    drop(client);
    drop(cluster);
    if chaos.right != chaos.run || calm.right != calm.run {
        return Err(format!(
            "{} of {} answers were not right",
            chaos.run + calm.run - chaos.right - calm.right,
            chaos.run + calm.run
        )
        .into());
    }
    Ok(())
}

/// Runs every query once, checking its answer.
async fn pass(
    client: &rask::Client,
    queries: &[(String, String)],
    expected: &BTreeMap<String, Vec<Vec<String>>>,
    tally: &mut Tally,
) {
    for (name, sql) in queries {
        tally.run += 1;
        let answer = match client.sql(sql).await {
            Ok(frame) => frame.collect().await,
            Err(e) => Err(e),
        };
        let checked = answer
            .map_err(|e| e.to_string())
            .and_then(|batches| answers::rows(&batches))
            .map(|rows| answers::same(&rows, &expected[name]));
        match checked {
            Ok(Ok(())) => tally.right += 1,
            Ok(Err(different)) => tally.wrong.push(format!("{name}: {different}")),
            Err(failed) => tally.failed.push(format!("{name}: {failed}")),
        }
    }
}

/// Keeps the highest peak seen of each worker process, by pid.
fn note_peaks(workers: &[u32], peaks: &Mutex<BTreeMap<String, u64>>) {
    let Ok(mut peaks) = peaks.lock() else {
        return;
    };
    for &pid in workers {
        if let Some(peak) = report::peak_memory(pid) {
            let seen = peaks.entry(format!("worker pid {pid}")).or_default();
            *seen = (*seen).max(peak);
        }
    }
}
