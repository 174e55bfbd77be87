//! How rask's processes use their allocator's memory (mimalloc's): where
//! 2 MiB transparent huge pages are given up for small ones.
//!
//! A huge page is zeroed whole on its first touch. A worker then holds
//! more resident memory than it has data, and a short-lived client spends a
//! sixth of its time zeroing pages it never fills. A process that runs
//! queries itself (the embedded cluster, `rask serve`) keeps them: there
//! they save more in TLB misses than they cost. `MIMALLOC_ALLOW_THP`, when
//! set, decides for every process instead.

/// mimalloc's setting: `0` runs the process in small pages.
const ALLOW_HUGE_PAGES: &str = "MIMALLOC_ALLOW_THP";

/// How a worker process's allocator runs, unless the environment says
/// otherwise: in small pages, so that the worker's resident memory follows
/// what it holds, which is what `--memory-limit` bounds (SF10 q21 under
/// 2 GiB: peaks of 2.1 GiB with huge pages, 1.9 without). Giving freed memory
/// back at once as well (`MIMALLOC_PURGE_DELAY=0`) lowered peaks further but
/// made TPC-H a fifth slower.
pub fn worker_environment() -> impl Iterator<Item = (&'static str, &'static str)> {
    [(ALLOW_HUGE_PAGES, "0")]
        .into_iter()
        .filter(|(variable, _)| std::env::var_os(variable).is_none())
}

/// Runs this process (a client of a cluster elsewhere) in small pages from
/// now on, unless the environment says otherwise: `rask query --scheduler`
/// took 17.4 ms instead of 21.0 for a one-row count (`perf stat -r 30`).
pub fn small_pages_for_a_client() {
    if std::env::var_os(ALLOW_HUGE_PAGES).is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours; a kernel without it returns an error, which changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether huge pages are off for this process.
    fn small_pages() -> bool {
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }

    // Each test runs in a process of its own (nextest): this one's pages
    // are its own to change.
    #[test]
    fn a_client_gives_up_huge_pages_unless_the_environment_keeps_them() {
        // SAFETY: no other thread of this test process reads the environment.
        unsafe { std::env::set_var(ALLOW_HUGE_PAGES, "1") };
        small_pages_for_a_client();
        assert!(!small_pages());
        assert_eq!(worker_environment().count(), 0);
        unsafe { std::env::remove_var(ALLOW_HUGE_PAGES) };
        assert_eq!(
            worker_environment().collect::<Vec<_>>(),
            [(ALLOW_HUGE_PAGES, "0")]
        );
        small_pages_for_a_client();
        assert!(small_pages());
    }
}
