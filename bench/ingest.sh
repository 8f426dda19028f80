#!/usr/bin/env bash
# Ingest and verify against DuckDB in the same run, optionally against an
# older build of piiwatch (before/after on the same machine).
#
#   nice -n 5 bench/ingest.sh                         # the 1M-customer, 3-day plain file bench/reader.sh made
#   OLD=/path/to/old/piiwatch bench/ingest.sh         # also ingest and verify with an older binary, alternating
#
# Runs `piiwatch ingest` over the uncompressed simulation into a fresh store
# (under /usr/bin/time), DuckDB's COUNT(DISTINCT subject) per source address
# over the same file (bench/duckdb_distinct.py), then `piiwatch verify` of the
# store, twice per binary, alternating. Needs bench-data/reader/ and
# bench-data/venv/ from bench/reader.sh. Writes under bench-data/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${DIR:-bench-data/reader}
FILE=${FILE:-$DIR/events.jsonl}
NEW=target/release/piiwatch
OLD=${OLD:-}

cargo build --release --locked -q
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
echo "input: $FILE ($(du -h "$FILE" | cut -f1)), $(cat "$DIR/.params" 2>/dev/null || true)"
bins=(new)
[[ -n $OLD ]] && bins+=(old)
bin() { if [[ $1 == new ]]; then echo "$NEW"; else echo "$OLD"; fi; }
for b in "${bins[@]}"; do
    store=bench-data/ingest-$b
    rm -rf "$store"
    /usr/bin/time -f "%e %P %M" -o "bench-data/ingest-$b.time" "$(bin "$b")" ingest --store "$store" --format json \
        --directory "$DIR/directory.json" --out "bench-data/ingest-$b-findings.jsonl" \
        --quarantine bench-data/ingest-quarantine.jsonl "$FILE" 2> "bench-data/ingest-$b.txt"
    python3 - "$b" <<'PY'
import json, sys
b = sys.argv[1]
s = [json.loads(l) for l in open(f"bench-data/ingest-{b}.txt") if l.startswith("{")][-1]
wall, cpu, rss = open(f"bench-data/ingest-{b}.time").read().split()
print(f"piiwatch ingest ({b}): {s['events'] / s['seconds'] / 1e6:.3f} M events/s ({wall} s wall, {cpu} CPU, "
      f"max RSS {int(rss) / 1024:.0f} MiB, {s['store']['stored']} stored)")
PY
done
if [[ -n $OLD ]]; then
    cmp bench-data/ingest-new-findings.jsonl bench-data/ingest-old-findings.jsonl && echo "findings: identical"
fi
bench-data/venv/bin/python bench/duckdb_distinct.py "$FILE" 2
for round in 1 2; do
    for b in "${bins[@]}"; do
        /usr/bin/time -f "verify ($b, round $round): %e s, %P CPU, max RSS %M KiB" "$(bin "$b")" verify \
            --store bench-data/ingest-new --format json 2>&1 > "bench-data/verify-$b.json" | tail -1
    done
done
