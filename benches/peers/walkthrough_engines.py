"""DuckDB or Polars on the walkthrough's groupby over the same Parquet month as
`rask-bench walkthrough --peers`.

Usage: python3 walkthrough_engines.py duckdb|polars MONTH.parquet RUNS THREADS

Prints `groupby_parquet <median ms> <min ms> <max ms>`: the time of
`SELECT name, max(x), avg(y) ... GROUP BY name ORDER BY name`, collected, after
one warm-up run. Optional: the benchmark runs it only with `--peers`, for the
packages that are installed.
"""

import os
import sys

from timing import timed


def main():
    engine, month, runs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET threads = {int(threads)}")
        sql = (
            f"SELECT name, max(x) AS x, avg(y) AS y FROM read_parquet('{month}') "
            "GROUP BY name ORDER BY name"
        )
        step = lambda: con.execute(sql).fetchall()
    elif engine == "polars":
        os.environ["POLARS_MAX_THREADS"] = threads
        import polars as pl

        step = lambda: (
            pl.scan_parquet(month)
            .group_by("name")
            .agg(pl.col("x").max(), pl.col("y").mean())
            .sort("name")
            .collect()
        )
    else:
        sys.exit(f"unknown engine {engine}")
    median, low, high = timed(runs, step)
    print(f"groupby_parquet {median:.3f} {low:.3f} {high:.3f}")


if __name__ == "__main__":
    main()
