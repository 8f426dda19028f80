#!/usr/bin/env bash
# The evidence store: ingest throughput, bytes per event, and a scope
# against DuckDB, in the same run.
#
#   nice -n 10 bench/store.sh      # the 1 M-customer, 3-day plain file bench/reader.sh made
#
# Runs `piiwatch ingest` (detection + ledger) over the uncompressed
# simulation into a fresh store under /usr/bin/time -v, reports the store's
# size per event, then `piiwatch scope` of the signing key auth-key-2019
# (the 2025 breach's key), then DuckDB answering the same from the input;
# then `piiwatch export --format parquet` and DuckDB over that Parquet.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${DIR:-bench-data/reader}
FILE=${FILE:-$DIR/events.jsonl}
STORE=${STORE:-bench-data/store}
KEY=${KEY:-auth-key-2019}
BIN=target/release/piiwatch

cargo build --release --locked -q
rm -rf "$STORE"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
echo "input: $FILE ($(du -h "$FILE" | cut -f1)), $(cat "$DIR/.params" 2>/dev/null || true)"
/usr/bin/time -v -o bench-data/store.time "$BIN" ingest --store "$STORE" --format json --directory "$DIR/directory.json" \
    --out bench-data/store-findings.jsonl --quarantine bench-data/store-quarantine.jsonl "$FILE" \
    2> bench-data/store-summary.txt
python3 - "$STORE" <<'PY'
import json, os, sys
store = sys.argv[1]
s = [json.loads(l) for l in open("bench-data/store-summary.txt") if l.startswith("{")][-1]
t = {l.split(": ")[0].strip(): l.split(": ")[-1].strip() for l in open("bench-data/store.time") if ": " in l}
rss = int(t["Maximum resident set size (kbytes)"]) / 1024
size = sum(os.path.getsize(os.path.join(root, f)) for root, _, fs in os.walk(store) for f in fs)
led = sum(os.path.getsize(os.path.join(store, "ledger", f)) for f in os.listdir(os.path.join(store, "ledger")))
n = s["store"]["stored"]
print(f"piiwatch ingest: {n / s['seconds'] / 1e6:.3f} M events/s ({s['seconds']:.1f}s, {n} events stored), max RSS {rss:.0f} MiB; "
      f"store {size / 1e9:.2f} GB ({size / n:.0f} bytes/event; ledger {led / n:.0f}, subject map {os.path.getsize(os.path.join(store, 'subjects.map')) / 1e6:.0f} MB)")
PY
start=$(date +%s.%N)
"$BIN" scope --store "$STORE" --format json --where "actor.session.issuer = \"$KEY\"" > bench-data/store-scope.json
end=$(date +%s.%N)
python3 -c "
import json; s = json.load(open('bench-data/store-scope.json'))
print(f'piiwatch scope (scan, no index yet): key $KEY: {s[\"subjects\"]} subjects, {s[\"events\"]} events in {$end - $start:.2f}s')"
bench-data/venv/bin/python bench/duckdb_scope.py "$FILE" "$KEY" 2
start=$(date +%s.%N)
"$BIN" export --store "$STORE" --format parquet --out bench-data/store-export 2>/dev/null
end=$(date +%s.%N)
python3 -c "import os; print(f'piiwatch export: {$end - $start:.1f}s, {os.path.getsize(\"bench-data/store-export/events.parquet\") / 1e9:.2f} GB of Parquet')"
bench-data/venv/bin/python bench/duckdb_scope.py bench-data/store-export/events.parquet "$KEY" 2
