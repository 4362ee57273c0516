#!/usr/bin/env bash
# What metering costs in instructions (SPEC §7: at most 3%, with a device id on
# every message, the folds included): callgrind instructions per message of
# the broker as shipped against the `bench-unmetered` build, and where the
# metered build spends them (per-produce work, per-delivery work, the folds).
#
#   bash benches/metering-profile.sh            # both builds, both cases
#   CASES="c0" CG_SECS=20 bash benches/metering-profile.sh
#   METERED_BIN=... UNMETERED_BIN=... bash benches/metering-profile.sh
#   BUILDS=metered ...                          # one build only
#
# Per build and case: the broker runs under valgrind on a fresh data dir;
# after a 1 s warm-up its counters are zeroed; `tallyq bench --producers 4
# --batch 100 --size 1024 --devices 100 --consumers C --rate $RATE` runs for
# $CG_SECS (16) s; then `tallyq usage` folds what the background folds had
# not; the counters are dumped and divided by the messages stored.
# Instruction counts do not move with the machine's load. The offered rate
# is fixed ($RATE, 500 msg/s, what a broker under valgrind keeps up with on a
# busy machine) so both builds store the same messages in the same time:
# work done per second (the folds every second, timers) weighs the same in
# both, but far more per message than at full native speed (~100,000
# msg/s), so the ratio here is an upper bound of metering's share; the
# per-function lines say which part is per message and which per fold.
# KEEP_DIR=DIR keeps the annotated profiles there. Needs valgrind
# (callgrind_annotate).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/benches/lib.sh"
CG_SECS="${CG_SECS:-16}"
RATE="${RATE:-500}"
cases="${CASES:-c0 c1}"
builds="${BUILDS:-metered unmetered}"
if [ -z "${METERED_BIN:-}${UNMETERED_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
    --features bench-unmetered --target-dir "$root/target/unmetered"
fi
metered="${METERED_BIN:-$root/target/release/tallyq}"
unmetered="${UNMETERED_BIN:-$root/target/unmetered/release/tallyq}"
client="$metered"

wait_token() { for _ in $(seq 600); do [ -s "$1/operator.token" ] && return 0; sleep 0.2; done; return 1; }

# The inclusive instructions of the largest entry whose name contains $2.
incl() { awk -v p="$2" 'index($0, p) { gsub(",", "", $1); print $1; exit }' "$1"; }

profile() { # build label, binary, consumers
  local label="$1" bin="$2" consumers="$3"
  local dir="$work/cg-$label-$consumers" port mport
  port=$(free_port); mport=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg-$label-$consumers.out" "$bin" serve \
    --data-dir "$dir" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    >"$work/cg-$label.log" 2>&1 &
  local vp=$!; pids+=("$vp")
  wait_token "$dir" || { echo "the broker under valgrind wrote no token" >&2; exit 1; }
  local url="http://127.0.0.1:$port" op="$dir/operator.token"
  "$client" --server "$url" --token-file "$op" bench --setup warm --producers 1 --batch 100 \
    --size 1024 --devices 100 --consumers 0 --duration-secs 1 >/dev/null
  callgrind_control -z "$vp" >/dev/null
  local line key
  line=$("$client" --server "$url" --token-file "$op" bench --setup bench --producers 4 \
    --batch 100 --size 1024 --devices 100 --consumers "$consumers" --rate "$RATE" \
    --duration-secs "$CG_SECS")
  key=$("$client" --server "$url" --token-file "$op" key create bench --scope manage 2>/dev/null)
  "$client" --server "$url" --token "$key" usage >/dev/null
  callgrind_control -d "$vp" >/dev/null
  kill "$vp"; wait "$vp" 2>/dev/null || true
  local n out="$work/incl-$label-$consumers.txt"
  n=$(grep -o 'produced=[0-9]*' <<<"$line" | cut -d= -f2)
  callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$work/cg-$label-$consumers.out.1" \
    2>/dev/null >"$out"
  [ -n "${KEEP_DIR:-}" ] && mkdir -p "$KEEP_DIR" && cp "$out" "$KEEP_DIR/"
  local total; total=$(grep "PROGRAM TOTALS" "$out" | awk '{gsub(",","",$1); print $1}')
  echo "$label c$consumers messages=$n instr_per_msg=$((total / n))"
  if [ "$label" = metered ]; then
    for f in \
      "tallyq::broker::delivery::device_journal::<impl tallyq::broker::Broker>::fold_device_journal" \
      "tallyq::broker::device_usage::<impl tallyq::broker::Broker>::fold_topic" \
      "tallyq::metering::UsageDelta::produced_all" \
      "tallyq::metering::UsageDelta::delivered_all" \
      "tallyq::metering::UsageDelta::write_journaled" \
      "tallyq::metering::UsageDelta::write_without_devices" \
      "tallyq::storage::repo::device_journal::<impl tallyq::storage::write_set::WriteSet>::journal_device_usage" \
      "tallyq::storage::repo::device_journal::<impl tallyq::storage::store::Store>::device_journal" \
      "tallyq::storage::repo::usage::<impl tallyq::storage::write_set::WriteSet>::add_usage" \
      "tallyq::storage::repo::usage::<impl tallyq::storage::write_set::WriteSet>::add_device_usage" \
      "tallyq::admission::Admission::admit_produce" \
      "tallyq::quota::" ; do
      local v; v=$(incl "$out" "$f")
      printf '    %8s  %s\n' "$(( ${v:-0} / n ))" "$f"
    done
  fi
}

for c in $cases; do
  consumers="${c#c}"
  for b in $builds; do
    bin="$metered"; [ "$b" = unmetered ] && bin="$unmetered"
    profile "$b" "$bin" "$consumers"
  done
done
