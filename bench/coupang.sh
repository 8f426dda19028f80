# Sourced by the benchmarks that run on a coupang simulation: builds the
# release binary, says what the machine is, and makes (once) the plain
# simulation of $CUSTOMERS customers over $DAYS days under $W, setting
# $P (the binary), $sim (its directory) and $lines (its line count).
P=$PWD/target/release/piiwatch
cargo build --release --locked -q
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
mkdir -p "$W"
sim=$W/sim-$CUSTOMERS-$DAYS
if [[ ! -f $sim/events.jsonl ]]; then
    rm -rf "$sim"
    "$P" simulate --scenario coupang --customers "$CUSTOMERS" --days "$DAYS" --out "$sim" --no-gzip > /dev/null
fi
lines=$(wc -l < "$sim/events.jsonl")
