#!/usr/bin/env bash
# Reader throughput, end to end and against peers.
#
#   nice -n 10 bench/reader.sh                    # 1M customers, 3 days (several GB)
#   CUSTOMERS=20000 DAYS=1 bench/reader.sh        # a quick smoke run
#
# Run from the repository root (the script changes there itself). Writes
# everything under bench-data/ (git-ignored):
#   bench-data/reader/events.jsonl       plain simulation (reused when its .params marker matches)
#   bench-data/reader-gz/events.jsonl.gz the same simulation, gzip
#   bench-data/venv/                     Python venv with duckdb
#   bench-data/stats-*.json, *.time      piiwatch stats output and /usr/bin/time -v reports
#
# Steps: build piiwatch; simulate; print machine info; the in-memory reader
# benchmark (cargo bench -p ingest --bench reader, one thread, peers
# included); `piiwatch stats` end to end on the gzip and the plain file; DuckDB
# over the plain file (bench/duckdb_read.py).
set -euo pipefail

cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-1000000}
DAYS=${DAYS:-3}
SEED=1
PLAIN_DIR=bench-data/reader
GZ_DIR=bench-data/reader-gz
PLAIN=$PLAIN_DIR/events.jsonl
GZ=$GZ_DIR/events.jsonl.gz
BIN=target/release/piiwatch

section() { printf '\n=== %s ===\n' "$*"; }

section "build"
cargo build --release -p cli

# simulate DIR FILE GZIP(yes|no)
simulate() {
    local dir=$1 file=$2 gzip=$3
    local params="scenario=coupang customers=$CUSTOMERS days=$DAYS seed=$SEED gzip=$gzip"
    if [[ -f $file && -f $dir/.params && $(cat "$dir/.params") == "$params" ]]; then
        echo "$file: reusing ($params)"
        return
    fi
    rm -f "$dir/.params"
    mkdir -p "$dir"
    local flags=()
    [[ $gzip == no ]] && flags+=(--no-gzip)
    "$BIN" simulate --scenario coupang --out "$dir" --customers "$CUSTOMERS" --days "$DAYS" --seed "$SEED" "${flags[@]}"
    echo "$params" >"$dir/.params"
}

section "data"
simulate "$PLAIN_DIR" "$PLAIN" no
simulate "$GZ_DIR" "$GZ" yes
ls -l "$PLAIN" "$GZ"

section "machine"
echo "nproc: $(nproc)"
lscpu | grep 'Model name' || true
free -g | head -2
rustc --version
cargo --version
uname -srm

section "in-memory reader benchmark (one thread, PIIWATCH_BENCH_MAX_MB=${PIIWATCH_BENCH_MAX_MB:-2000 (default)})"
# cargo runs benches from the package directory: pass an absolute path.
PIIWATCH_BENCH_FILE=$PWD/$PLAIN cargo bench -p ingest --bench reader

# stats_run LABEL FILE: piiwatch stats end to end under /usr/bin/time -v.
stats_run() {
    local label=$1 file=$2
    local out=bench-data/stats-$label.json timing=bench-data/stats-$label.time
    echo "-- $label: $BIN stats $file --format json"
    # --quarantine keeps the quarantine file out of the working tree.
    /usr/bin/time -v -o "$timing" "$BIN" stats "$file" --format json \
        --quarantine "bench-data/quarantine-$label.jsonl" >"$out"
    python3 - "$out" "$timing" "$file" "$PLAIN" <<'EOF'
import json, os, re, sys
out, timing, file, plain = sys.argv[1:]
stats = json.load(open(out))
t = open(timing).read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
user = float(re.search(r"User time \(seconds\): (\S+)", t).group(1))
system = float(re.search(r"System time \(seconds\): (\S+)", t).group(1))
cpu = re.search(r"Percent of CPU this job got: (\S+)", t).group(1)
events = stats["events"]
mb_plain = os.path.getsize(plain) / 1e6
mb_file = os.path.getsize(file) / 1e6
print(f"   wall {secs:.2f}s (user {user:.2f}s, sys {system:.2f}s, CPU {cpu})")
print(f"   {events} events, {stats['quarantined']} quarantined -> {events / secs / 1e6:.3f} M events/s")
print(f"   {mb_plain / secs:.0f} MB/s of JSON ({mb_plain:.0f} MB uncompressed, {mb_file:.0f} MB read)")
print(f"   max RSS {rss_kb / 1024:.0f} MiB")
EOF
}

section "piiwatch stats end to end"
stats_run gzip "$GZ"
stats_run plain "$PLAIN"

section "duckdb"
VENV=bench-data/venv
if ! { [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import duckdb' 2>/dev/null; }; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q duckdb
fi
"$VENV/bin/python" bench/duckdb_read.py "$PLAIN"
