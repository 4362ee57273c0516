#!/usr/bin/env bash
# What metering and rate quotas cost end to end (SPEC §7: at most 3%).
#
#   bash benches/cost-of-metering.sh        # RUNS=5 SECONDS_PER_RUN=6 by default
#
# Builds the broker twice: as shipped, and with the `bench-unmetered` feature
# (records no usage, spends no produce or delivery rate; a measurement build
# that must never be deployed). Then runs `tallyq bench` against each,
# alternating, on a fresh data dir every time: 4 producers x batches of 100 x
# 1 KiB at full speed, without device ids and with 100 device ids (each
# metered on its own), produce only and produce + 1 consumer. Prints medians
# and metered/unmetered ratios of produced msgs/s.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-5}"
secs="${SECONDS_PER_RUN:-6}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
  --features bench-unmetered --target-dir "$root/target/unmetered"
metered="$root/target/release/tallyq"
unmetered="$root/target/unmetered/release/tallyq"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

run() { # args: build binary, then bench flags
  local bin="$1" dir="$work/tq-$RANDOM" port mport pid; shift
  port=$(free_port); mport=$(free_port)
  "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" >/dev/null 2>&1 &
  pid=$!; pids+=("$pid"); wait_port "$port"
  timeout $((secs + 60)) "$metered" --server "http://127.0.0.1:$port" --token-file "$dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$pid" "$@"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

results="$work/results.txt"
for i in $(seq "$runs"); do
  for devices in 0 100; do
    for consumers in 0 1; do
      case_id="d$devices-c$consumers"
      if (( i % 2 )); then order="metered unmetered"; else order="unmetered metered"; fi
      for build in $order; do
        bin="$metered"; [ "$build" = unmetered ] && bin="$unmetered"
        echo "$case_id $build $(run "$bin" --consumers "$consumers" --devices "$devices")" >> "$results"
      done
    done
  done
  echo "run $i of $runs done" >&2
done
cat "$results" >&2
python3 - "$results" "$runs" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[3:])
    rows.setdefault((parts[0], parts[1]), []).append(float(f["msgs_per_sec"]))
# Ratios are taken within each run (metered and unmetered ran back to back), then the median.
print(f"\nmedians of {sys.argv[2]} runs, 4 producers x batches of 100 x 1 KiB, loopback\n")
print("| case | unmetered msg/s | metered msg/s | metered / unmetered (median of per-run ratios) |")
print("|---|---|---|---|")
labels = {"d0-c0": "produce only, no device ids", "d0-c1": "produce + 1 consumer, no device ids",
          "d100-c0": "produce only, 100 device ids", "d100-c1": "produce + 1 consumer, 100 device ids"}
for case, label in labels.items():
    m, u = rows.get((case, "metered"), []), rows.get((case, "unmetered"), [])
    ratios = [a / b for a, b in zip(m, u) if b]
    print(f"| {label} | {statistics.median(u):.0f} | {statistics.median(m):.0f} | {statistics.median(ratios):.3f} |")
PY
