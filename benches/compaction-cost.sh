#!/usr/bin/env bash
# What the disk free-space check and compaction cost on durable produce, and
# what compaction gives back. `tallyq bench` (4 producers x batches of 100 x
# 1 KiB at full speed, produce only) against three brokers, alternating the
# order each run, each on a fresh data dir:
#
#   before   a build from before the disk watermark and compaction existed
#   off      this build with compaction off (compact_below_live_percent = 0):
#            the free-space check only
#   now      this build, compaction every second (compaction_interval_seconds = 1)
#
# Case "plain": the bench topic as usual (everything retained: the free-space
# check runs, compaction finds nothing to do).
# Case "churn": the bench topic capped at 32 MiB (the oldest reclaimed), while
# a second tenant's week-retained topic gets one 64 KiB message every 100 ms,
# so every 64 MiB segment is pinned by a few long-retained sets around dead
# ones: `now` compacts during the run, `off` and `before` keep the segments.
# The segment files' size at the end of each run is printed too.
#
#   BEFORE_BIN=/work/wt/base/target/release/tallyq bash benches/compaction-cost.sh
#   bash benches/compaction-cost.sh REV      # builds REV in a scratch worktree
#   RUNS=3 SECONDS_PER_RUN=8 by default
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-8}"
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
printf 'compaction_interval_seconds = 1\n' > "$work/now.toml"
printf 'compact_below_live_percent = 0\n' > "$work/off.toml"
big="$(head -c 65536 /dev/zero | tr '\0' k)"

# One run: build name, case; prints the bench's result line and segments=BYTES.
run_case() {
  local build="$1" case="$2" bin="$now" config="" flags=() trickle=""
  case "$build" in
    before) bin="$before" ;;
    off) config="$work/off.toml" ;;
    now) config="$work/now.toml" ;;
  esac
  if [ -n "$config" ]; then TALLYQ_CONFIG="$config" start_tallyq "$bin"; else start_tallyq "$bin"; fi
  local cli=("$now" --server "http://127.0.0.1:$server_port")
  if [ "$case" = churn ]; then
    flags=(--topic-max-bytes $((32 << 20)))
    "${cli[@]}" --token-file "$server_dir/operator.token" tenant create keeper >/dev/null
    local key; key=$("${cli[@]}" --token-file "$server_dir/operator.token" key create keeper --scope produce,manage 2>/dev/null)
    "${cli[@]}" --token "$key" topic create keep --expiry-seconds 604800 >/dev/null
    ( while :; do "${cli[@]}" --token "$key" produce keep "$big" >/dev/null 2>&1 || true; sleep 0.1; done ) &
    trickle=$!
  fi
  local line
  line=$(timeout $((secs + 60)) "$now" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" --consumers 0 "${flags[@]}")
  [ -z "$trickle" ] || { kill "$trickle" 2>/dev/null || true; wait "$trickle" 2>/dev/null || true; }
  local segments; segments=$(du -sb "$server_dir/segments" 2>/dev/null | cut -f1)
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
  echo "$line segments=$segments"
}

results="$work/results.txt"
for i in $(seq "$runs"); do
  for case in plain churn; do
    if (( i % 2 )); then order="before off now"; else order="now off before"; fi
    for build in $order; do
      echo "$case $build $(run_case "$build" "$case")" >> "$results"
    done
  done
  echo "run $i of $runs done" >&2
done
cat "$results" >&2
[ -z "${RESULTS_COPY:-}" ] || cp "$results" "$RESULTS_COPY"
python3 "$root/benches/compaction_table.py" "$results" "$runs" "$secs"
