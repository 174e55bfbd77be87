//! The other engines (Dask, pandas, DuckDB), run as Python scripts beside
//! rask, on the same data.

use super::*;

/// What a peer script printed: its package's version and a time per step.
pub(crate) struct PeerTimes {
    pub(crate) version: String,
    pub(crate) times: std::collections::HashMap<String, Stats>,
}

/// The Python that runs the peer scripts: `$RASK_PYTHON`, else `python3`.
pub(crate) fn peer_python() -> String {
    std::env::var("RASK_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `benches/peers/<script>` with `args` if `module` imports; reads its
/// `<step> <median> <min> <max>` lines. `None` (and a line saying so) when
/// the module is not installed.
pub(crate) fn peer_script(
    module: &str,
    script: &str,
    args: &[String],
) -> Result<Option<PeerTimes>, Box<dyn std::error::Error>> {
    let python = peer_python();
    let package = module.split('.').next().unwrap_or(module);
    let version = Command::new(&python)
        .args([
            "-c",
            &format!("import {module}, {package}; print({package}.__version__)"),
        ])
        .stderr(Stdio::null())
        .output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => {
            println!("{module}: not installed in {python} (set RASK_PYTHON), skipped");
            return Ok(None);
        }
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(script);
    let output = Command::new(&python).arg(&path).args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut times = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, median, min, max] = fields[..] else {
            continue;
        };
        let ms = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
        times.insert(
            name.to_string(),
            Stats {
                median: ms(median),
                min: ms(min),
                max: ms(max),
            },
        );
    }
    Ok(Some(PeerTimes { version, times }))
}
