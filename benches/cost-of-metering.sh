#!/usr/bin/env bash
# What metering and rate quotas cost end to end (SPEC §7: at most 3%, also
# with a device id on every message).
#
#   bash benches/cost-of-metering.sh        # RUNS=5 SECONDS_PER_RUN=6 by default
#   CASES="d100-c0 d100-c1" bash benches/cost-of-metering.sh   # only some cases
#
# Builds the broker twice: as shipped, and with the `bench-unmetered` feature
# (records no usage, spends no produce or delivery rate; a measurement build
# that must never be deployed). Then runs `tallyq bench` against each,
# alternating, on a fresh data dir every time: 4 producers x batches of 100 x
# 1 KiB at full speed, without device ids and with 100 device ids (each
# message its own), produce only and produce + 1 consumer.
#
# Per run it records the produced msgs/s, the broker's CPU (utime + stime from
# /proc, which the other load on a shared machine moves far less than
# throughput) per produced message, and the CPU of the folds that run
# afterwards (`tallyq usage` folds what the background folds have not).
# Per-device usage is journaled as one row per produced set and one per
# delivery pass, and folded every second in the background
# (src/broker/delivery/device_journal.rs): that fold runs inside the measured
# run, so it is in the broker's CPU per message. (Until round 6 the produce
# side was derived from the stored sets by a fold after the run; sets of a
# data dir of an earlier version still are, src/broker/device_usage.rs.) Prints
# medians and worst runs of the metered/unmetered ratios, taken within each
# run (the two builds ran back to back).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-5}"
secs="${SECONDS_PER_RUN:-6}"
cases="${CASES:-d0-c0 d0-c1 d100-c0 d100-c1}"
source "$root/benches/lib.sh"

# METERED_BIN / UNMETERED_BIN: measure other builds (e.g. an older commit's)
# instead of building this checkout's.
if [ -z "${METERED_BIN:-}${UNMETERED_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
    --features bench-unmetered --target-dir "$root/target/unmetered"
fi
metered="${METERED_BIN:-$root/target/release/tallyq}"
unmetered="${UNMETERED_BIN:-$root/target/unmetered/release/tallyq}"
client="$metered"

# CPU seconds (utime + stime) of a process so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# One bench run of SERVER with bench flags; prints its result line plus
# fold_cpu_s=: the broker's CPU while `tallyq usage` folds what the run stored.
run() {
  local server="$1"; shift
  start_tallyq "$server"
  local url="http://127.0.0.1:$server_port" op="$server_dir/operator.token"
  local line
  line=$(timeout $((secs + 60)) "$client" --server "$url" --token-file "$op" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" "$@")
  local key before after
  key=$("$client" --server "$url" --token-file "$op" key create bench --scope manage 2>/dev/null)
  before=$(cpu_of "$server_pid")
  "$client" --server "$url" --token "$key" usage >/dev/null
  after=$(cpu_of "$server_pid")
  echo "$line fold_cpu_s=$(python3 -c "print(round($after - $before, 3))")"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
}

results="$work/results.txt"
for i in $(seq "$runs"); do
  for case_id in $cases; do
    devices="${case_id#d}"; devices="${devices%-c*}"; consumers="${case_id#*-c}"
    if (( i % 2 )); then order="metered unmetered"; else order="unmetered metered"; fi
    for build in $order; do
      bin="$metered"; [ "$build" = unmetered ] && bin="$unmetered"
      echo "$case_id $build $i $(run "$bin" --consumers "$consumers" --devices "$devices")" >> "$results"
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
    f = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
    produced = float(f["produced"])
    cpu = float(f["server_cpu_s"]) if f.get("server_cpu_s") not in (None, "-", "") else float("nan")
    fold = float(f.get("fold_cpu_s", 0))
    rows.setdefault((parts[0], parts[1]), {})[parts[2]] = (
        float(f["msgs_per_sec"]), cpu * 1e6 / produced, (cpu + fold) * 1e6 / produced, fold * 1e6 / produced)
print(f"\n{sys.argv[2]} runs, 4 producers x batches of 100 x 1 KiB, loopback; ratios within each run, then median (worst)\n")
print("| case | unmetered msg/s | metered msg/s | throughput metered/unmetered | CPU us/msg unmetered | metered | CPU ratio | fold us/msg | CPU ratio incl. fold |")
print("|---|---|---|---|---|---|---|---|---|")
labels = {"d0-c0": "produce only, no device ids", "d0-c1": "produce + 1 consumer, no device ids",
          "d100-c0": "produce only, 100 device ids", "d100-c1": "produce + 1 consumer, 100 device ids"}
for case, label in labels.items():
    m, u = rows.get((case, "metered"), {}), rows.get((case, "unmetered"), {})
    runs = sorted(set(m) & set(u))
    if not runs:
        continue
    med = lambda xs: statistics.median(xs)
    thr = [m[r][0] / u[r][0] for r in runs]
    cpu = [m[r][1] / u[r][1] for r in runs]
    cpu_fold = [m[r][2] / u[r][2] for r in runs]
    print(f"| {label} | {med([u[r][0] for r in runs]):.0f} | {med([m[r][0] for r in runs]):.0f} "
          f"| {med(thr):.3f} ({min(thr):.3f}) | {med([u[r][1] for r in runs]):.2f} | {med([m[r][1] for r in runs]):.2f} "
          f"| {med(cpu):.3f} ({max(cpu):.3f}) | {med([m[r][3] for r in runs]):.3f} | {med(cpu_fold):.3f} ({max(cpu_fold):.3f}) |")
PY
