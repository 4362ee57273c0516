#!/usr/bin/env bash
# Is the current build slower than an earlier one? Runs `tallyq bench` against
# the two brokers alternately (A B, then B A, ...), each on a fresh data dir:
# 4 producers x batches of 100 x 1 KiB at full speed, produce only and
# produce + 1 consumer. Prints medians and per-run now/before ratios, the
# worst run too (the ratio within one pair is what holds on a noisy machine).
#
#   bash benches/before-after.sh REV        # e.g. a commit before a change
#   BEFORE_BIN=path/to/tallyq bash benches/before-after.sh
#   RUNS=5 SECONDS_PER_RUN=6 by default
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-5}"
secs="${SECONDS_PER_RUN:-6}"
source "$root/benches/lib.sh"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
now="$root/target/release/tallyq"
before="${BEFORE_BIN:-}"
if [ -z "$before" ]; then
  rev="${1:?give a git revision to compare with, or BEFORE_BIN}"
  tree="$root/target/before-$(git -C "$root" rev-parse --short "$rev")"
  [ -d "$tree" ] || git -C "$root" worktree add --detach -q "$tree" "$rev"
  cargo build --release --quiet --manifest-path "$tree/Cargo.toml" --bin tallyq
  before="$tree/target/release/tallyq"
fi

run() { run_bench "$now" "$@"; } # args: broker binary, then bench flags

results="$work/results.txt"
for i in $(seq "$runs"); do
  for consumers in 0 1; do
    if (( i % 2 )); then order="now before"; else order="before now"; fi
    for build in $order; do
      bin="$now"; [ "$build" = before ] && bin="$before"
      echo "c$consumers $build $(run "$bin" --consumers "$consumers")" >> "$results"
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
    f = dict(kv.split("=", 1) for kv in parts[2:] if "=" in kv)
    rows.setdefault((parts[0], parts[1]), []).append(float(f["msgs_per_sec"]))
print(f"\n{sys.argv[2]} alternating runs, 4 producers x batches of 100 x 1 KiB, loopback\n")
print("| case | before msg/s (median) | now msg/s (median) | now / before: median of per-run ratios | worst run |")
print("|---|---|---|---|---|")
for case, label in {"c0": "produce only", "c1": "produce + 1 consumer"}.items():
    n, b = rows.get((case, "now"), []), rows.get((case, "before"), [])
    ratios = [x / y for x, y in zip(n, b) if y]
    print(f"| {label} | {statistics.median(b):.0f} | {statistics.median(n):.0f} | {statistics.median(ratios):.3f} | {min(ratios):.3f} |")
PY
