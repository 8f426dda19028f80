#!/usr/bin/env python3
"""DuckDB's side of the detection speed benchmark (bench/detect.sh).

    bench-data/venv/bin/python bench/duckdb_distinct.py bench-data/reader/events.jsonl [threads]

Computes, over the same uncompressed OCSF file piiwatch detect reads, the
distinct data subjects per source address of successful API Activity
(class 6003) calls: COUNT(DISTINCT resources[].uid) GROUP BY src_endpoint.ip.
This is far less than detection does (one dimension, one window, no order,
no state carried between events), which is why it is the yardstick. Prints
rows/s over all input lines, MB/s, and a checksum of the answer.
"""

import os
import sys
import time

import duckdb

MAX_OBJECT = 64 << 20


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) == 3 else 2
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(16 << 20), b""))
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute("SET preserve_insertion_order=false")
    f = "'" + path.replace("'", "''") + "'"
    columns = (
        "columns={'class_uid': 'BIGINT', 'status_id': 'BIGINT', 'src_endpoint': 'STRUCT(ip VARCHAR)', "
        "'resources': 'STRUCT(uid VARCHAR)[]'}"
    )
    sql = (
        "SELECT count(*), sum(n), max(n) FROM ("
        f" SELECT src_endpoint.ip AS ip, count(DISTINCT r.uid) AS n"
        f" FROM read_json({f}, format='newline_delimited', ignore_errors=true, maximum_object_size={MAX_OBJECT}, {columns}),"
        " unnest(resources) AS t(r)"
        " WHERE class_uid = 6003 AND status_id = 1 GROUP BY ip)"
    )
    t = time.perf_counter()
    addresses, total, busiest = con.execute(sql).fetchone()
    secs = time.perf_counter() - t
    print(
        f"duckdb {duckdb.__version__} threads={threads}: {lines / secs / 1e6:.3f} M lines/s, {size / secs / 1e6:.0f} MB/s "
        f"({secs:.1f}s; {addresses} addresses, {total} address-subject pairs, busiest address {busiest} subjects)"
    )


if __name__ == "__main__":
    main()
