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
source "$root/benches/lib.sh"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
  --features bench-unmetered --target-dir "$root/target/unmetered"
metered="$root/target/release/tallyq"
unmetered="$root/target/unmetered/release/tallyq"

run() { run_bench "$metered" "$@"; } # args: broker binary, then bench flags

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
