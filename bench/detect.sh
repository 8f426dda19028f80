#!/usr/bin/env bash
# Detection speed and memory, against DuckDB in the same run.
#
#   nice -n 10 bench/detect.sh                 # the 1M-customer, 3-day plain file bench/reader.sh made
#   FILE=path/events.jsonl DIR=path bench/detect.sh
#
# Runs `piiwatch detect` end to end over the uncompressed simulation (under
# /usr/bin/time -v for peak memory), then DuckDB computing COUNT(DISTINCT
# subject) per source address over the same file with 2 threads
# (bench/duckdb_distinct.py). Needs bench-data/reader/ and bench-data/venv/
# from bench/reader.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${DIR:-bench-data/reader}
FILE=${FILE:-$DIR/events.jsonl}
BIN=target/release/piiwatch

cargo build --release --locked -q
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
echo "input: $FILE ($(du -h "$FILE" | cut -f1)), $(cat "$DIR/.params" 2>/dev/null || true)"
/usr/bin/time -v -o bench-data/detect.time "$BIN" detect --format json --directory "$DIR/directory.json" \
    --out bench-data/detect-findings.jsonl --quarantine bench-data/detect-quarantine.jsonl "$FILE" \
    2> bench-data/detect-summary.txt
python3 - <<'PY'
import json
s = [json.loads(l) for l in open("bench-data/detect-summary.txt") if l.startswith("{")][-1]
t = {l.split(": ")[0].strip(): l.split(": ")[-1].strip() for l in open("bench-data/detect.time") if ": " in l}
rss = int(t["Maximum resident set size (kbytes)"]) / 1024
print(f"piiwatch detect: {s['events'] / s['seconds'] / 1e6:.3f} M events/s ({s['seconds']:.1f}s, {s['events']} events), "
      f"max RSS {rss:.0f} MiB, detector state ~{s['state_bytes'] / 2**20:.0f} MiB, "
      f"findings {sum(d['findings'] for d in s['detectors'].values())}")
PY
bench-data/venv/bin/python bench/duckdb_distinct.py "$FILE" 2
