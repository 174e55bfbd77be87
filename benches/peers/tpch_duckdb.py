"""DuckDB on the same TPC-H Parquet files and queries as `rask-bench tpch`.

Usage: python3 tpch_duckdb.py DATA_DIR QUERIES_DIR OUT_DIR RUNS THREADS

Writes OUT_DIR/qNN.csv (the answer, no header, NULL for nulls) and prints one
line per query: `qNN <median ms> <min ms> <max ms>`. Optional: the benchmark
runs it only with `--peers`, when the `duckdb` package is installed.
"""

import csv
import os
import statistics
import sys
import time

import duckdb

TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def main():
    data, queries, out, runs, threads = sys.argv[1:6]
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    for table in TABLES:
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}/*.parquet')"
        )
    for n in range(1, 23):
        name = f"q{n:02}"
        with open(os.path.join(queries, f"{name}.sql")) as f:
            sql = f.read()
        times = []
        rows = []
        for _ in range(int(runs) + 1):
            started = time.perf_counter()
            rows = con.execute(sql).fetchall()
            times.append((time.perf_counter() - started) * 1e3)
        times = times[1:]  # the first run warms the cache
        with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            for row in rows:
                writer.writerow(["NULL" if v is None else str(v) for v in row])
        print(f"{name} {statistics.median(times):.1f} {min(times):.1f} {max(times):.1f}", flush=True)


if __name__ == "__main__":
    main()
