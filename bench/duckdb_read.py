#!/usr/bin/env python3
"""DuckDB reading the same OCSF JSON-lines file, as a yardstick for piiwatch's reader.

    bench-data/venv/bin/python bench/duckdb_read.py bench-data/reader/events.jsonl

For threads=2 and threads=1 it times:

  full parse      SELECT count(*) FROM read_json(FILE, format='newline_delimited', ...)
  6003, columns   count(*), count(DISTINCT src_endpoint.ip) WHERE class_uid = 6003,
                  reading only those two columns, declared as explicit struct types
  6003, auto      the same query over read_json_auto (schema detected from a sample)

All reads use ignore_errors=true (the file has deliberately malformed lines)
and a generous maximum_object_size. rows/s counts input lines (all of them,
not just matches) per second and MB/s is file bytes per second, so the
numbers line up with the Rust reader benchmark. A failing query prints its
error and the run continues. Started by bench/reader.sh.
"""

import os
import sys
import time

import duckdb

MAX_OBJECT = 64 << 20  # bytes; far above any real line


def count_lines(path):
    """Counts newline-terminated lines (plus a final unterminated one); warms the page cache."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while True:
            block = f.read(16 << 20)
            if not block:
                break
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def sql_string(s):
    return "'" + s.replace("'", "''") + "'"


def queries(path):
    f = sql_string(path)
    opts = f"format='newline_delimited', ignore_errors=true, maximum_object_size={MAX_OBJECT}"
    columns = "columns={'class_uid': 'BIGINT', 'src_endpoint': 'STRUCT(ip VARCHAR)'}"
    return [
        ("full parse, count(*)", f"SELECT count(*) FROM read_json({f}, {opts})"),
        (
            "class 6003, explicit columns",
            f'SELECT count(*), count(DISTINCT "src_endpoint"."ip") FROM read_json({f}, {opts}, {columns}) '
            "WHERE class_uid = 6003",
        ),
        (
            "class 6003, read_json_auto",
            f'SELECT count(*), count(DISTINCT "src_endpoint"."ip") FROM read_json_auto({f}, {opts}) '
            "WHERE class_uid = 6003",
        ),
    ]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path = sys.argv[1]
    size = os.path.getsize(path)
    t = time.perf_counter()
    lines = count_lines(path)
    secs = time.perf_counter() - t
    print(f"duckdb {duckdb.__version__}, python {sys.version.split()[0]}")
    print(f"{path}: {size / 1e6:.1f} MB, {lines} lines (counted in {secs:.1f}s, {size / secs / 1e6:.0f} MB/s)")

    for threads in (2, 1):
        print(f"\n-- threads={threads}")
        try:
            con = duckdb.connect()
            con.execute(f"SET threads={threads}")
            con.execute("SET preserve_insertion_order=false")
        except Exception as e:  # noqa: BLE001 - report and move on
            print(f"  cannot open duckdb: {type(e).__name__}: {e}")
            continue
        for name, sql in queries(path):
            t = time.perf_counter()
            try:
                result = con.execute(sql).fetchall()
            except Exception as e:  # noqa: BLE001 - report and move on
                secs = time.perf_counter() - t
                msg = str(e).strip().splitlines()
                print(f"  {name:<30} FAILED after {secs:.1f}s: {type(e).__name__}: {msg[0] if msg else ''}")
                for extra in msg[1:6]:
                    print(f"  {'':<30}   {extra}")
                continue
            secs = time.perf_counter() - t
            row = ", ".join(str(v) for v in result[0]) if result else "no rows"
            print(
                f"  {name:<30} {lines / secs / 1e6:8.3f} M rows/s {size / secs / 1e6:8.0f} MB/s"
                f"  ({secs:.2f}s; result: {row})"
            )
        con.close()


if __name__ == "__main__":
    main()
