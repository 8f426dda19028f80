#!/usr/bin/env bash
# The exposure index: ingest throughput (detect + store + index), bytes per
# event, and scope of one signing key and of a 30-address set, against
# DuckDB over the exported Parquet, in the same run.
#
#   nice -n 10 bench/index.sh                      # 1 M customers, 30 days (~110 M events, ~60 GB of disk)
#   CUSTOMERS=20000 DAYS=3 bench/index.sh          # a quick smoke run
#
# Writes under bench-data/ (git-ignored): the simulation (reused when its
# .params marker matches), the store, the Parquet export, the numbers in
# bench-data/index-results.txt. Needs bench-data/venv with duckdb
# (bench/reader.sh makes it; or `python3 -m venv bench-data/venv &&
# bench-data/venv/bin/pip install duckdb`).
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-1000000}
DAYS=${DAYS:-30}
KEY=${KEY:-auth-key-2019}
SIM=bench-data/index-sim-$CUSTOMERS-$DAYS
STORE=bench-data/index-store
EXPORT=bench-data/index-export
BIN=target/release/piiwatch
OUT=bench-data/index-results.txt
RUNS=${RUNS:-5}

cargo build --release --locked -q -p cli
if [[ ! -x bench-data/venv/bin/python ]]; then
    python3 -m venv bench-data/venv
    bench-data/venv/bin/pip install -q duckdb
fi
params="scenario=coupang customers=$CUSTOMERS days=$DAYS seed=1"
if [[ ! -f $SIM/.params || $(cat "$SIM/.params") != "$params" ]]; then
    rm -rf "$SIM"
    "$BIN" simulate --scenario coupang --customers "$CUSTOMERS" --days "$DAYS" --seed 1 --out "$SIM"
    echo "$params" > "$SIM/.params"
fi
: > "$OUT"
say() { echo "$*" | tee -a "$OUT"; }
say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
say "input: $SIM/events.jsonl.gz ($(du -h "$SIM/events.jsonl.gz" | cut -f1)), $params"

rm -rf "$STORE" "$EXPORT"
# Detection alone over the same input, for what the store adds on top.
/usr/bin/time -v -o bench-data/index-detect.time "$BIN" detect --format json \
    --directory "$SIM/directory.json" --out bench-data/index-detect-findings.jsonl \
    --quarantine bench-data/index-quarantine.jsonl "$SIM/events.jsonl.gz" 2> bench-data/index-detect.txt
python3 - <<'PY' | tee -a "$OUT"
import json
s = [json.loads(l) for l in open("bench-data/index-detect.txt") if l.startswith("{")][-1]
t = {l.split(": ")[0].strip(): l.split(": ")[-1].strip() for l in open("bench-data/index-detect.time") if ": " in l}
print(f"detect alone: {s['events'] / s['seconds'] / 1e6:.3f} M events/s ({s['seconds']:.1f} s), max RSS {int(t['Maximum resident set size (kbytes)']) / 1024:.0f} MiB")
PY
/usr/bin/time -v -o bench-data/index-ingest.time "$BIN" ingest --store "$STORE" --format json \
    --directory "$SIM/directory.json" --out bench-data/index-findings.jsonl \
    --quarantine bench-data/index-quarantine.jsonl "$SIM/events.jsonl.gz" 2> bench-data/index-ingest.txt
python3 - "$STORE" <<'PY' | tee -a "$OUT"
import json, os, sys
store = sys.argv[1]
s = [json.loads(l) for l in open("bench-data/index-ingest.txt") if l.startswith("{")][-1]
t = {l.split(": ")[0].strip(): l.split(": ")[-1].strip() for l in open("bench-data/index-ingest.time") if ": " in l}
rss = int(t["Maximum resident set size (kbytes)"]) / 1024
led = sum(os.path.getsize(os.path.join(store, "ledger", f)) for f in os.listdir(os.path.join(store, "ledger")))
idx = os.path.getsize(os.path.join(store, "index.redb"))
smap = os.path.getsize(os.path.join(store, "subjects.map"))
merkle = sum(os.path.getsize(os.path.join(store, "merkle", f)) for f in os.listdir(os.path.join(store, "merkle")))
n = s["store"]["stored"]
wall = t["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
print(f"ingest (detect + store + index): {n / s['seconds'] / 1e6:.3f} M events/s ({s['seconds']:.1f} s to the last event, {wall} wall with the final index commit, {n} events), max RSS {rss:.0f} MiB")
print(f"bytes per event: ledger {led / n:.1f}, index {idx / n:.1f}, Merkle leaves {merkle / n:.1f}, subject map {smap / n:.1f}; "
      f"total {(led + idx + smap + merkle) / 1e9:.2f} GB")
PY

# The 30 addresses: the crawler's (truth.json lists them under the attack's
# indicators) and, to make 30, the first other addresses of the input.
python3 - "$SIM" > bench-data/index-ips.txt <<'PY'
import gzip, json, re, sys
sim = sys.argv[1]
# truth.json is large (every exposed subject): read the attack lines' indicators only.
ips = []
for line in open(f"{sim}/truth.json"):
    m = re.search(r'"src_endpoint\.ip":\[([^\]]*)\]', line)
    if m:
        ips += [i for i in json.loads("[" + m.group(1) + "]") if i not in ips]
with gzip.open(f"{sim}/events.jsonl.gz", "rt") as f:
    for line in f:
        if len(ips) >= 30:
            break
        try:
            ip = json.loads(line).get("src_endpoint", {}).get("ip")
        except Exception:
            continue
        if ip and ip not in ips:
            ips.append(ip)
print("\n".join(ips[:30]))
PY
IN=$(python3 -c "import sys; print(', '.join(repr(l.strip()).replace(\"'\", '\"') for l in open('bench-data/index-ips.txt') if l.strip()))")

# scope NAME EXPR: the best of RUNS runs, and the answer
scope() {
    local name=$1 expr=$2 best=
    for _ in $(seq "$RUNS"); do
        local start end
        start=$(date +%s.%N)
        "$BIN" scope --store "$STORE" --format json --where "$expr" > "bench-data/index-scope-$name.json"
        end=$(date +%s.%N)
        best=$(python3 -c "b='$best'; x=$end-$start; print(x if not b else min(float(b), x))")
    done
    python3 -c "
import json; s = json.load(open('bench-data/index-scope-$name.json'))
print(f'piiwatch scope $name: {s[\"subjects\"]} subjects, {s[\"events\"]} events; best of $RUNS: {$best * 1000:.0f} ms (whole command)')" | tee -a "$OUT"
}
scope key "actor.session.issuer = \"$KEY\""
scope ips "src_endpoint.ip in ($IN)"
# The README's query: an index-narrowed scan of the ledger (one run: it takes seconds).
RUNS=1 scope hosting "actor.session.issuer = \"$KEY\" and src_endpoint.autonomous_system.number in (\"16276\", \"16509\", \"20473\", \"63949\")"
"$BIN" scope --store "$STORE" --where "actor.session.issuer = \"$KEY\"" --format table | grep "answered by" | tee -a "$OUT"

start=$(date +%s.%N)
"$BIN" export --store "$STORE" --format parquet --out "$EXPORT" 2>/dev/null
end=$(date +%s.%N)
python3 -c "import os; print(f'piiwatch export: {$end - $start:.1f} s, {os.path.getsize(\"$EXPORT/events.parquet\") / 1e9:.2f} GB of Parquet')" | tee -a "$OUT"
bench-data/venv/bin/python bench/duckdb_index.py "$EXPORT/events.parquet" "$KEY" bench-data/index-ips.txt 2 | tee -a "$OUT"

# verify: every hash and link, every signed checkpoint, the index rebuilt and compared.
start=$(date +%s.%N)
/usr/bin/time -v -o bench-data/index-verify.time "$BIN" verify --store "$STORE" > bench-data/index-verify.txt 2>&1 || true
end=$(date +%s.%N)
python3 -c "
t = {l.split(': ')[0].strip(): l.split(': ')[-1].strip() for l in open('bench-data/index-verify.time') if ': ' in l}
print(f'piiwatch verify: {$end - $start:.1f} s, max RSS {int(t[\"Maximum resident set size (kbytes)\"]) / 1024:.0f} MiB; ' + open('bench-data/index-verify.txt').read().strip().splitlines()[-1])" | tee -a "$OUT"
