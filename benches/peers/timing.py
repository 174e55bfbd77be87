"""Timing shared by the peer scripts."""

import statistics
import time


def timed(runs, step):
    """Median, fastest and slowest of `runs` runs of `step`, in ms, after one warm-up."""
    step()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), min(times), max(times)
