"""psycopg on one connection to `rask serve --pg-port`, for `rask-bench postgres`.

Usage: python3 postgres_psycopg.py PORT RUNS

Prints `<step> <median ms> <min ms> <max ms>` for:
- `select_1`: the round trip of `SELECT 1` (prepared once, as psycopg does
  after a few runs; 20 times RUNS round trips);
- `rows_text`, `rows_binary`: `SELECT * FROM timeseries() LIMIT 100000`
  fetched whole, in text and in binary.
Each after one warm-up.
"""

import sys

import psycopg

from timing import timed


def main():
    port, runs = sys.argv[1], int(sys.argv[2])
    url = f"host=127.0.0.1 port={port} user=rask dbname=rask"
    rows = "SELECT * FROM timeseries() LIMIT 100000"
    with psycopg.connect(url, autocommit=True) as conn:
        steps = {
            "select_1": (20 * runs, lambda: conn.execute("SELECT 1").fetchone()),
            "rows_text": (runs, lambda: conn.execute(rows).fetchall()),
            "rows_binary": (runs, lambda: conn.execute(rows, binary=True).fetchall()),
        }
        for name, (n, step) in steps.items():
            median, fastest, slowest = timed(n, step)
            print(f"{name} {median:.3f} {fastest:.3f} {slowest:.3f}")


if __name__ == "__main__":
    main()
