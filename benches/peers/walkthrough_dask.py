"""Dask on the walkthrough's dataframe steps, as `rask-bench walkthrough --peers` runs them.

Usage: python3 walkthrough_dask.py RUNS WORKERS THREADS_PER_WORKER

The month of `dask.datasets.timeseries()` (30 daily partitions, one row a
second), on a `distributed.LocalCluster` of WORKERS processes. Prints one line
per step: `<step> <median ms> <min ms> <max ms>`, after one warm-up run each.
Optional: the benchmark runs it only with `--peers`, when `dask[distributed]`
is installed in the Python it finds (`RASK_PYTHON`, else `python3`).
"""

import statistics
import sys
import time

import dask
import dask.datasets
from dask.distributed import Client, LocalCluster


def month():
    return dask.datasets.timeseries(seed=42)


STEPS = {
    "groupby": lambda: month().groupby("name").agg({"x": "max", "y": "mean"}).compute(),
    "apply": lambda: month().x.apply(lambda v: v**2, meta=("x", "f8")).sum().compute(),
    "x*x": lambda: (month().x * month().x).sum().compute(),
    "map_partitions": lambda: month().map_partitions(lambda part: part).compute(),
    "plain": lambda: month().compute(),
    "unique": lambda: month().name.unique().compute(),
}


def main():
    runs, workers, threads = (int(a) for a in sys.argv[1:4])
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=None,
    ) as cluster, Client(cluster):
        for name, step in STEPS.items():
            times = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                step()
                times.append((time.perf_counter() - started) * 1e3)
            times = times[1:]  # the first run warms the workers
            print(
                f"{name} {statistics.median(times):.1f} {min(times):.1f} {max(times):.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
