#!/usr/bin/env python3
"""DuckDB's side of the scope benchmark (bench/store.sh).

    bench-data/venv/bin/python bench/duckdb_scope.py bench-data/reader/events.jsonl KEY [threads]
    bench-data/venv/bin/python bench/duckdb_scope.py STORE-EXPORT/events.parquet KEY [threads]

Distinct subjects exposed by successful API Activity calls whose token was
signed by KEY, read from the uncompressed OCSF input (explicit columns, no
schema inference) or from `piiwatch export --format parquet`. Prints the
time and the answer.
"""

import sys
import time

import duckdb


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path, key = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) == 4 else 2
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    f = "'" + path.replace("'", "''") + "'"
    columns = (
        "columns={'class_uid': 'BIGINT', 'status_id': 'BIGINT', "
        "'actor': 'STRUCT(session STRUCT(issuer VARCHAR))', 'resources': 'STRUCT(uid VARCHAR)[]'}"
    )
    sql = (
        "SELECT count(DISTINCT r.uid), count(DISTINCT rowid_) FROM ("
        f" SELECT row_number() OVER () AS rowid_, resources"
        f" FROM read_json({f}, format='newline_delimited', ignore_errors=true, maximum_object_size={64 << 20}, {columns})"
        " WHERE class_uid = 6003 AND status_id = 1 AND actor.session.issuer = ? AND len(resources) > 0),"
        " unnest(resources) AS t(r)"
    )
    if path.endswith(".parquet"):
        sql = (
            f"SELECT count(DISTINCT resources_uid), NULL FROM read_parquet({f})"
            " WHERE success AND actor_session_issuer = ? AND resources_uid IS NOT NULL"
        )
    t = time.perf_counter()
    subjects, events = con.execute(sql, [key]).fetchone()
    secs = time.perf_counter() - t
    print(f"duckdb {duckdb.__version__} threads={threads}: scope of key {key}: {subjects} subjects, {events} events in {secs:.2f}s")


if __name__ == "__main__":
    main()
