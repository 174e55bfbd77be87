//! Links the `rask` command as a position-dependent executable on Linux,
//! unless `RASK_PIE=1` is set when building.
//!
//! A position-independent `rask` (Rust's default) has some 275,000 relative
//! relocations the loader applies at every start, writing to 1,100 pages of
//! data: `rask --version` took 6.7 ms and 1,469 page faults, 1.9 ms and 191
//! position-dependent. A query run as its own process (`rask query -c`) pays
//! that each time. Packing the relocations (`-z pack-relative-relocs`) saves
//! little: the pages are written all the same. What is given up is the
//! randomised address of the executable's own code (libraries, stack and heap
//! keep theirs); SECURITY.md says so, and `RASK_PIE=1` keeps it.

fn main() {
    println!("cargo:rerun-if-env-changed=RASK_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let pie = std::env::var("RASK_PIE").is_ok_and(|v| v == "1");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
