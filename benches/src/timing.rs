//! Timing both sides alike: runs alternated, medians and ranges, whole
//! processes timed from start to exit.

use super::*;

/// Runs `sql` on `client` and on `ctx` alternately, `runs` times after one
/// warm-up each; returns their times.
pub(crate) async fn alternate(
    runs: usize,
    client: &rask::Client,
    ctx: &SessionContext,
    sql: &str,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..=runs {
        let started = Instant::now();
        client.sql(sql).await?.collect().await?;
        let a = started.elapsed();
        let started = Instant::now();
        ctx.sql(sql).await?.collect().await?;
        let b = started.elapsed();
        if i > 0 {
            ours.push(a);
            theirs.push(b);
        }
    }
    Ok((ours, theirs))
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

/// Runs both commands alternately `runs` times; returns their wall-clock
/// times and peak memory.
pub(crate) fn compare(
    runs: usize,
    ours: &Invocation,
    theirs: &Invocation,
) -> Result<(Timed, Timed), Box<dyn std::error::Error>> {
    // One warm-up each: page cache, binary loading.
    run_once(ours)?;
    run_once(theirs)?;
    let (mut a, mut b) = ((Vec::new(), 0), (Vec::new(), 0));
    for _ in 0..runs {
        for ((took, peak), command) in [(&mut a, ours), (&mut b, theirs)] {
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
