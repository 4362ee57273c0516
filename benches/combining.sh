#!/usr/bin/env bash
# Produce combining (issue 15): broker CPU per message from /proc and messages per stored
# set, at one message per request (64 producers x 1 x 256 B) and batched (4 x 100 x 1 KiB),
# produce only, this build against an earlier one, alternating (A B, then B A, ...).
# With CALLGRIND=1 it instead runs each broker once under `valgrind --tool=callgrind` (the
# count zeroed after set-up) and prints instructions per message (repeatable under load).
#
#   BEFORE_BIN=path/to/older/tallyq bash benches/combining.sh
#   RUNS=3 SECONDS_PER_RUN=8 by default; BEFORE_BIN empty: this build only;
#   NOW_BIN=path: use that binary as "now" instead of building this tree
#   CALLGRIND=1 SECONDS_PER_RUN=20 BEFORE_BIN=... bash benches/combining.sh
#   SCENARIOS="s4p64 s4p256 s1" (default "s4p64 s1")
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-8}"
source "$root/benches/lib.sh"

now="${NOW_BIN:-}"
if [ -z "$now" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  now="$root/target/release/tallyq"
fi
before="${BEFORE_BIN:-}"
builds="now"; [ -n "$before" ] && builds="now before"

declare -A scenario=(
  [s4p64]="--producers 64 --batch 1 --size 256"
  [s4p256]="--producers 256 --batch 1 --size 256"
  [s1]="--producers 4 --batch 100 --size 1024"
)
scenarios="${SCENARIOS:-s4p64 s1}"

# One run: starts BINARY (under callgrind when asked), benches, prints one line.
one() { # args: label, binary, scenario name
  local label="$1" bin="$2" name="$3" dir port mport pid out
  dir="$work/tq-$RANDOM"; port=$(free_port); mport=$(free_port)
  local wrap=()
  [ "${CALLGRIND:-0}" = 1 ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no)
  "${wrap[@]}" "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    >/dev/null 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 600); do [ -s "$dir/operator.token" ] && (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  local client=(timeout $((secs * 3 + 120)) "$now" --server "http://127.0.0.1:$port" --token-file "$dir/operator.token")
  # A 1 s warm-up on its own tenant, then zero the count and run for real (its set-up is
  # a few calls against thousands of produces).
  "${client[@]}" bench --setup warm --topic warm --duration-secs 1 --consumers 0 ${scenario[$name]} >/dev/null
  [ "${CALLGRIND:-0}" = 1 ] && callgrind_control --zero "$pid" >/dev/null
  local cpu0; cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local m0; m0=$(curl -fsS "http://127.0.0.1:$mport/metrics" | awk '/^tallyq_produced_sets_total/ {s+=$2} END {print s+0}')
  out=$("${client[@]}" bench --setup bench --duration-secs "$secs" --consumers 0 ${scenario[$name]} --server-pid "$pid" 2>/dev/null)
  local cpu1; cpu1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local m1; m1=$(curl -fsS "http://127.0.0.1:$mport/metrics" | awk '/^tallyq_produced_sets_total/ {s+=$2} END {print s+0}')
  local produced; produced=$(sed -n 's/.*produced=\([0-9]*\).*/\1/p' <<<"$out")
  local hz; hz=$(getconf CLK_TCK)
  local ir=""
  if [ "${CALLGRIND:-0}" = 1 ]; then
    callgrind_control --dump "$pid" >/dev/null
    ir=$(cat "$work"/cg."$pid"* 2>/dev/null | awk '/^summary:/ {s+=$2} END {print s+0}')
    ir=" ir_per_msg=$(( ir / (produced > 0 ? produced : 1) ))"
  fi
  local sets=$((m1 - m0))
  local per_set="n/a"; [ "$sets" -gt 0 ] && per_set=$(python3 -c "print(f'{$produced/$sets:.1f}')")
  echo "$name $label produced=$produced cpu_us_per_msg=$(python3 -c "print(f'{($cpu1-$cpu0)/$hz*1e6/max($produced,1):.1f}')") msgs_per_set=$per_set$ir $(grep -o 'msgs_per_sec=[0-9]*' <<<"$out")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir" "$work"/cg.*
}

for i in $(seq "$runs"); do
  for name in $scenarios; do
    order="$builds"; (( i % 2 )) || order=$(tr ' ' '\n' <<<"$builds" | tac | tr '\n' ' ')
    for build in $order; do
      bin="$now"; [ "$build" = before ] && bin="$before"
      one "$build" "$bin" "$name"
    done
  done
  [ "${CALLGRIND:-0}" = 1 ] && break
done
