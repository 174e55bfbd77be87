//! Timing both sides alike: runs alternated (A B, then B A, …), medians and
//! ranges, whole processes timed from start to exit.

use std::cell::RefCell;
use std::future::Future;

use rask::arrow::record_batch::RecordBatch;

use super::*;

/// How long [`alternate`] waits at most for rask's cluster to go idle after
/// a run, before the other side is timed.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Both sides' times of one query, and their answers in the last run.
pub(crate) struct Alternated {
    /// rask's times.
    pub ours: Vec<Duration>,
    /// DataFusion's times.
    pub theirs: Vec<Duration>,
    /// rask's answer.
    pub our_answer: Vec<RecordBatch>,
    /// DataFusion's answer.
    pub their_answer: Vec<RecordBatch>,
}

/// Runs `sql` on `client` and on `ctx` alternately (see [`abba`]), `runs`
/// times after one warm-up each, rask's cluster let go idle after each of
/// its runs; returns their times and last answers.
pub(crate) async fn alternate(
    runs: usize,
    client: &rask::Client,
    ctx: &SessionContext,
    sql: &str,
) -> Result<Alternated, Box<dyn std::error::Error>> {
    let (ours_last, theirs_last) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
    let (ours_cell, theirs_cell) = (&ours_last, &theirs_last);
    let (ours, theirs) = abba(
        runs,
        move || rask_run(client, sql, ours_cell),
        move || datafusion_run(ctx, sql, theirs_cell),
    )
    .await?;
    Ok(Alternated {
        ours,
        theirs,
        our_answer: ours_last.into_inner(),
        their_answer: theirs_last.into_inner(),
    })
}

/// One timed run of `sql` on rask, its answer kept in `last`; then, untimed,
/// [`settle`].
async fn rask_run(
    client: &rask::Client,
    sql: &str,
    last: &RefCell<Vec<RecordBatch>>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let took = timed_answer(last, async { Ok(client.sql(sql).await?.collect().await?) }).await?;
    settle(client, SETTLE).await?;
    Ok(took)
}

/// One timed run of `sql` on bare DataFusion, its answer kept in `last`.
async fn datafusion_run(
    ctx: &SessionContext,
    sql: &str,
    last: &RefCell<Vec<RecordBatch>>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    timed_answer(last, async { Ok(ctx.sql(sql).await?.collect().await?) }).await
}

/// How long `query` took; its answer is kept in `last`.
async fn timed_answer(
    last: &RefCell<Vec<RecordBatch>>,
    query: impl Future<Output = Result<Vec<RecordBatch>, Box<dyn std::error::Error>>>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let batches = query.await?;
    let took = started.elapsed();
    *last.borrow_mut() = batches;
    Ok(took)
}

/// Waits until no task group of `client`'s cluster has live tasks (polling
/// every millisecond, `within` at most): what one run left behind is not
/// timed with the next.
pub(crate) async fn settle(
    client: &rask::Client,
    within: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + within;
    while client.progress().await?.iter().any(|g| g.live > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Whether side A runs first in timed run `run`: A B, B A, A B, … so that
/// neither side always runs just after the other (on caches, memory and a
/// clock the other left).
pub(crate) fn a_first(run: usize) -> bool {
    run.is_multiple_of(2)
}

/// Times `a` and `b` (each returns the time of its work) once each as a
/// warm-up, then `runs` times in the order of [`a_first`]; returns their times.
pub(crate) async fn abba<A, B, FA, FB>(
    runs: usize,
    mut a: A,
    mut b: B,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>>
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = Result<Duration, Box<dyn std::error::Error>>>,
    FB: Future<Output = Result<Duration, Box<dyn std::error::Error>>>,
{
    a().await?;
    b().await?;
    let (mut a_times, mut b_times) = (Vec::new(), Vec::new());
    for run in 0..runs {
        if a_first(run) {
            a_times.push(a().await?);
            b_times.push(b().await?);
        } else {
            b_times.push(b().await?);
            a_times.push(a().await?);
        }
    }
    Ok((a_times, b_times))
}

pub(crate) fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A program and its arguments.
pub(crate) type Invocation = (PathBuf, Vec<String>);

/// `sql` run by a whole process on each side, CSV out: `rask query` (the
/// binary `rask`) and bare DataFusion (`me datafusion-sql`), on `threads`.
pub(crate) fn whole_processes(
    rask: &Path,
    me: &Path,
    threads: &str,
    sql: &str,
) -> (Invocation, Invocation) {
    let query = ["--threads", threads, "query", "--format", "csv", "-c", sql];
    let datafusion = ["datafusion-sql", "--threads", threads, "-c", sql];
    (
        (rask.to_path_buf(), args(&query)),
        (me.to_path_buf(), args(&datafusion)),
    )
}

/// Wall-clock times of a command's runs, and the largest peak memory of one.
pub(crate) type Timed = (Vec<Duration>, u64);

/// Runs both commands alternately `runs` times, in the order of
/// [`a_first`]; returns their wall-clock times and peak memory.
pub(crate) fn compare(
    runs: usize,
    ours: &Invocation,
    theirs: &Invocation,
) -> Result<(Timed, Timed), Box<dyn std::error::Error>> {
    // One warm-up each: page cache, binary loading.
    run_once(ours)?;
    run_once(theirs)?;
    let (mut a, mut b) = ((Vec::new(), 0), (Vec::new(), 0));
    for run in 0..runs {
        let mut sides = [(&mut a, ours), (&mut b, theirs)];
        if !a_first(run) {
            sides.reverse();
        }
        for ((took, peak), command) in sides {
            let (time, memory) = run_once(command)?;
            took.push(time);
            *peak = (*peak).max(memory);
        }
    }
    Ok((a, b))
}

/// Runs a command to its end; its wall-clock time and peak memory (its
/// high-water mark, read every millisecond while it runs).
pub(crate) fn run_once(
    (program, args): &Invocation,
) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Some(memory) = report::peak_memory(child.id()) {
            peak = peak.max(memory);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = started.elapsed();
    if !status.success() {
        return Err(format!("{} {} failed: {status}", program.display(), args.join(" ")).into());
    }
    Ok((took, peak))
}

/// Median, fastest and slowest of some timings, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub(crate) fn of(timings: &[Duration]) -> Self {
        let mut ms: Vec<f64> = timings.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        match ms.as_slice() {
            [] => Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            },
            ms => Self {
                median: ms[ms.len() / 2],
                min: ms[0],
                max: ms[ms.len() - 1],
            },
        }
    }
}

/// Prints two timings of the same work, their medians and ranges, and the
/// ratio of the first to the second.
pub(crate) fn print_pair(
    what: &str,
    (a_name, a): (&str, &[Duration]),
    (b_name, b): (&str, &[Duration]),
) {
    let (r, d) = (Stats::of(a), Stats::of(b));
    println!("{what}");
    let width = a_name.len().max(b_name.len()).max(10);
    println!(
        "  {a_name:<width$}  median {:8.1} ms   ({:.1} – {:.1})",
        r.median, r.min, r.max
    );
    println!(
        "  {b_name:<width$}  median {:8.1} ms   ({:.1} – {:.1})",
        d.median, d.min, d.max
    );
    println!("  ratio {a_name} / {b_name}: {:.3}", r.median / d.median);
}
