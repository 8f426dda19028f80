#!/usr/bin/env bash
# piiwatch serve on loopback: ingest through HTTP against `ingest` from a
# file on the same data, and the inline check's latency at a fixed rate.
#
#   bench/serve.sh                      # 200,000 customers x 1 day of coupang, 8 MiB bodies, 2 senders
#   CUSTOMERS=1000000 DAYS=3 bench/serve.sh
#   RATE=50000 DURATION=20 bench/serve.sh
#
# Prerequisites: a load generator, oha (`cargo install oha --version 1.16.0
# --locked`, about 10 minutes on two cores), and curl. Client and server share
# the machine's cores: the numbers are a floor for a dedicated server.
# Writes under bench-data/serve/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-200000}
DAYS=${DAYS:-1}
BODY_MB=${BODY_MB:-8}
SENDERS=${SENDERS:-2}
RATE=${RATE:-50000}
DURATION=${DURATION:-20}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
W=bench-data/serve

command -v curl > /dev/null || { echo "needs curl" >&2; exit 1; }
[[ -x $OHA ]] || { echo "needs oha: cargo install oha --version 1.16.0 --locked" >&2; exit 1; }
source bench/coupang.sh
echo "input: $sim/events.jsonl, $lines lines, $(du -h "$sim/events.jsonl" | cut -f1)"

# 1. ingest from the file.
rm -rf $W/store-file
/usr/bin/time -f "%e %P %M" -o $W/file.time "$P" ingest --store $W/store-file --directory "$sim/directory.json" \
    --quarantine $W/q-file.jsonl --out /dev/null "$sim/events.jsonl" 2> /dev/null
read -r fwall fcpu frss < $W/file.time
echo "ingest from the file: $fwall s, $(python3 -c "print(f'{$lines / $fwall / 1e6:.3f}')") M lines/s, $fcpu CPU, max RSS $((frss / 1024)) MiB"

# 2. the same lines through POST /v1/events, in bodies of BODY_MB, SENDERS at a time.
rm -rf $W/store-http $W/bodies
mkdir -p $W/bodies
split -C "${BODY_MB}M" -d -a 5 "$sim/events.jsonl" $W/bodies/b-
tok=$("$P" token create --store $W/store-http --role admin --name bench 2> /dev/null)
"$P" serve --store $W/store-http --listen 127.0.0.1:0 --directory "$sim/directory.json" \
    --quarantine $W/q-http.jsonl 2> $W/serve.err &
pid=$!
trap 'kill $pid 2> /dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^listening on' $W/serve.err && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' $W/serve.err | head -1)
start=$(date +%s.%N)
ls $W/bodies/b-* | xargs -P "$SENDERS" -I{} curl -sS -o /dev/null -w '%{http_code}\n' \
    -H "Authorization: Bearer $tok" --data-binary @{} "http://$addr/v1/events" > $W/codes.txt
end=$(date +%s.%N)
hwall=$(python3 -c "print(f'{$end - $start:.2f}')")
bad=$(grep -vc '^200$' $W/codes.txt || true)
echo "ingest through HTTP: $hwall s, $(python3 -c "print(f'{$lines / ($end - $start) / 1e6:.3f}')") M lines/s ($(wc -l < $W/codes.txt) bodies, $bad not 200), $(python3 -c "print(f'{$fwall / ($end - $start):.2f}')")x the file"

# 3. the inline check at RATE requests/s: one issued token (allowed) and a forged one (denied).
issued=$(grep -m1 '"class_uid": *3002' "$sim/events.jsonl")
read -r jti sub kid < <(python3 -c "import json,sys; e=json.loads(sys.argv[1]); print(e['session']['uid'], e['user']['uid'], e['session'].get('issuer',''))" "$issued")
time_ms=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['time'] + 1000)" "$issued")
for kind in issued forged; do
    t=$jti; [[ $kind == forged ]] && t=forged-$jti
    body="{\"token\":\"$t\",\"key\":\"$kid\",\"principal\":\"$sub\",\"ip\":\"198.51.100.7\",\"time\":$time_ms}"
    "$OHA" --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c 64 -m POST \
        -H "x-piiwatch-auth: $tok" -H 'content-type: application/json' -d "$body" \
        "http://$addr/v1/check" > $W/check-$kind.json
    python3 - "$kind" "$W/check-$kind.json" <<'PY'
import json, sys
kind, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"check ({kind}): {s['requestsPerSec']:.0f} req/s, p50 {p['p50'] * 1e3:.3f} ms, p99 {p['p99'] * 1e3:.3f} ms, "
      f"p99.9 {p['p99.9'] * 1e3:.3f} ms, status {codes}")
PY
done
curl -s "http://$addr/metrics" | grep -E '^piiwatch_check_seconds_(sum|count)' || true
kill -TERM $pid
wait $pid || true
trap - EXIT
"$P" verify --store $W/store-http > /dev/null && echo "verify of the HTTP store: intact"
