#!/usr/bin/env bash
# `ingest` run again on new files: the cost of continuing detection (the
# store's events replayed through the engine before each run) against one
# run over the whole input, and a check that the findings are the same.
#
#   bench/continue.sh                    # 200,000 customers x 1 day of coupang in 4 parts
#   CUSTOMERS=1000000 DAYS=3 PARTS=24 bench/continue.sh
#
# Writes under bench-data/continue/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-200000}
DAYS=${DAYS:-1}
PARTS=${PARTS:-4}
W=bench-data/continue

source bench/coupang.sh
echo "input: $sim/events.jsonl, $lines lines, $(du -h "$sim/events.jsonl" | cut -f1), $PARTS parts"
rm -rf $W/parts && mkdir -p $W/parts
split -d -a 3 -n l/"$PARTS" "$sim/events.jsonl" $W/parts/part-

# Seconds a command takes; its standard output appended to $1, its errors to $2.
secs() {
    local out=$1 err=$2 s e
    shift 2
    s=$(date +%s.%N)
    "$@" >> "$out" 2> "$err"
    e=$(date +%s.%N)
    echo "$e - $s" | bc
}

rm -rf $W/once $W/split $W/once.findings $W/split.findings
once=$(secs $W/once.findings $W/once.err "$P" ingest --store $W/once --directory "$sim/directory.json" \
    --quarantine $W/q.jsonl "$sim/events.jsonl")
echo "one run over the whole input: ${once} s"
total=0
for part in $W/parts/part-*; do
    t=$(secs $W/split.findings $W/split.err "$P" ingest --store $W/split --directory "$sim/directory.json" \
        --quarantine $W/q.jsonl "$part")
    replayed=$(grep -o 'continued from the [0-9]* events' $W/split.err | grep -o '[0-9]*' || echo 0)
    echo "  $(basename "$part"): ${t} s (replayed ${replayed} stored events first)"
    total=$(echo "$total + $t" | bc)
done
echo "$PARTS runs over the parts: ${total} s in all"
key='[.finding_info.uid, .activity_id, .count, .time] | @tsv'
if command -v jq > /dev/null; then
    if diff <(jq -r "$key" $W/once.findings | sort) <(jq -r "$key" $W/split.findings | sort) > /dev/null; then
        echo "findings: the same $(wc -l < $W/once.findings) reports"
    else
        echo "findings: DIFFER"
        exit 1
    fi
else
    echo "findings: $(wc -l < $W/once.findings) reports in one run, $(wc -l < $W/split.findings) over the parts (jq not installed: not compared)"
fi
