"""Dask on the walkthrough's general-compute steps, as `rask-bench futures --peers` runs them.

Usage: python3 people_dask.py RUNS [NOOP_TASKS]

On a `distributed.LocalCluster` of 2 processes x 1 thread: the 650
`add_two_people` delayed calls over the ordered pairs of 26 people, and
NOOP_TASKS (default 2000) no-op `submit`s and their `gather`. Prints
`<step> <median ms> <min ms> <max ms>` per step, after one warm-up run.
"""

import itertools
import statistics
import sys
import time

from dask import delayed
from dask.distributed import Client, LocalCluster


class Person:
    def __init__(self, name, value):
        self.name = name
        self.personal_value = value


def add_two_people(a, b):
    return a.personal_value + b.personal_value


def noop(i):
    return i


def timed(runs, step):
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e3)
    times = times[1:]
    return statistics.median(times), min(times), max(times)


def main():
    runs = int(sys.argv[1])
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    people = [Person(chr(65 + i), i / 26) for i in range(26)]
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:

        def pairs():
            operations = [delayed(add_two_people)(a, b) for a, b in itertools.permutations(people, 2)]
            client.gather(client.compute(operations))

        def noops():
            client.gather(client.map(noop, range(tasks), pure=False))

        for name, step in [("people", pairs), ("noop", noops)]:
            median, low, high = timed(runs, step)
            print(f"{name} {median:.1f} {low:.1f} {high:.1f}", flush=True)
        print(f"noop_tasks {tasks} {tasks} {tasks}", flush=True)


if __name__ == "__main__":
    main()
