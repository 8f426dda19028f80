#!/usr/bin/env python3
"""DuckDB's side of the index benchmark (bench/index.sh).

    bench-data/venv/bin/python bench/duckdb_index.py EXPORT/events.parquet KEY IPS_FILE [threads]

Over `piiwatch export --format parquet` (one row per successful or failed
access and subject), answers what `piiwatch scope --format json` answers for
`actor.session.issuer = KEY` and for `src_endpoint.ip in (the addresses in
IPS_FILE)` and for `actor.session.issuer = KEY and
src_endpoint.autonomous_system.number in (16276, 16509, 20473, 63949)`: exposing events, distinct subjects, distinct subjects per field
class, first and last time. Prints the best time of five runs of each (the
whole answer, per query) and the answer.
"""

import sys
import time

import duckdb


def answer(con, f, where, params):
    base = f"FROM read_parquet({f}) WHERE success AND resources_uid IS NOT NULL AND {where}"
    t = time.perf_counter()
    subjects, first, last = con.execute(
        f"SELECT count(DISTINCT resources_uid), min(time), max(time) {base}", params
    ).fetchone()
    # Events: accesses, not rows (one row per access and subject); an
    # access is its time, principal, token, address and operation.
    (events,) = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT time, actor_user_uid, actor_session_uid, src_endpoint_ip, "
        f"api_operation, activity_id {base})",
        params,
    ).fetchone()
    fields = dict(
        con.execute(
            f"SELECT f, count(DISTINCT resources_uid) FROM (SELECT resources_uid, unnest(resources_fields) AS f {base}) GROUP BY f ORDER BY f",
            params,
        ).fetchall()
    )
    secs = time.perf_counter() - t
    return secs, {"events": events, "subjects": subjects, "fields": fields, "first_seen_time": first, "last_seen_time": last}


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path, key, ips_file = sys.argv[1], sys.argv[2], sys.argv[3]
    threads = int(sys.argv[4]) if len(sys.argv) == 5 else 2
    ips = [l.strip() for l in open(ips_file) if l.strip()]
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    f = "'" + path.replace("'", "''") + "'"
    for name, where, params in [
        ("key", "actor_session_issuer = ?", [key]),
        (f"{len(ips)} addresses", "src_endpoint_ip IN (SELECT unnest(?::VARCHAR[]))", [ips]),
        # The README's query: the key from hosting networks (an index-narrowed scan for piiwatch).
        ("key from hosting ASNs", "actor_session_issuer = ? AND src_endpoint_autonomous_system_number IN (16276, 16509, 20473, 63949)", [key]),
    ]:
        best, ans = None, None
        for _ in range(5):
            secs, ans = answer(con, f, where, params)
            best = secs if best is None else min(best, secs)
        print(f"duckdb {duckdb.__version__} threads={threads}: {name}: best of 5: {best * 1000:.0f} ms: {ans}")


if __name__ == "__main__":
    main()
