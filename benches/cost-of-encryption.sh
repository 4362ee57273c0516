#!/usr/bin/env bash
# What encryption at rest costs end to end (SPEC §7: at most 5% of durable
# produce throughput).
#
#   RUNS=3 bash benches/cost-of-encryption.sh     # RUNS=5 SECONDS_PER_RUN=6 by default
#
# Builds the broker twice: as shipped (message sets sealed with AES-256-GCM,
# dedup and device ids HMACed), and with the `bench-unencrypted` feature (sets
# stored in plaintext, ids unhashed; a measurement build that must never be
# deployed). Then runs `tallyq bench` against each, alternating the order
# every run, on a fresh data dir every time: 4 producers x batches of 100 x
# 1 KiB at full speed (every batch acknowledged only after fdatasync), produce
# only and produce + 1 consumer, without and with 100 device ids. Prints
# medians and encrypted/plaintext ratios of produced and delivered msgs/s,
# the ratios taken within each run (back to back), then the median and the
# worst.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-5}"
secs="${SECONDS_PER_RUN:-6}"
source "$root/benches/lib.sh"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
  --features bench-unencrypted --target-dir "$root/target/unencrypted"
encrypted="$root/target/release/tallyq"
plaintext="$root/target/unencrypted/release/tallyq"

run() { run_bench "$encrypted" "$@"; } # args: broker binary, then bench flags

results="$work/results.txt"
for i in $(seq "$runs"); do
  for case_id in d0-c0 d0-c1 d100-c1; do
    devices="${case_id#d}"; devices="${devices%-c*}"; consumers="${case_id#*-c}"
    if (( i % 2 )); then order="encrypted plaintext"; else order="plaintext encrypted"; fi
    for build in $order; do
      bin="$encrypted"; [ "$build" = plaintext ] && bin="$plaintext"
      echo "$i $case_id $build $(run "$bin" --consumers "$consumers" --devices "$devices")" >> "$results"
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
    rows.setdefault((parts[1], parts[2]), []).append(
        (float(f["msgs_per_sec"]), float(f["delivered"]) / float(f["seconds"])))
print(f"\nmedians of {sys.argv[2]} runs, 4 producers x batches of 100 x 1 KiB, durable, loopback\n")
print("| case | plaintext produce msg/s | encrypted produce msg/s | produce ratio median (worst) | consume ratio median (worst) |")
print("|---|---|---|---|---|")
labels = {"d0-c0": "produce only", "d0-c1": "produce + 1 consumer",
          "d100-c1": "produce + 1 consumer, 100 device ids"}
for case, label in labels.items():
    e, p = rows.get((case, "encrypted"), []), rows.get((case, "plaintext"), [])
    produce = [a[0] / b[0] for a, b in zip(e, p) if b[0]]
    consume = [a[1] / b[1] for a, b in zip(e, p) if b[1]]
    c = f"{statistics.median(consume):.3f} ({min(consume):.3f})" if consume else "-"
    print(f"| {label} | {statistics.median(x[0] for x in p):.0f} | {statistics.median(x[0] for x in e):.0f} "
          f"| {statistics.median(produce):.3f} ({min(produce):.3f}) | {c} |")
# Server CPU per stored message: steadier than msg/s on a shared machine (it
# does not count time the broker spent waiting for a core).
cpu = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
    if f.get("server_cpu_s", "-") != "-" and float(f["produced"]) > 0:
        cpu.setdefault((parts[1], parts[2]), []).append(
            float(f["server_cpu_s"]) * 1e6 / float(f["produced"]))
print("\n| case | plaintext server CPU us/msg | encrypted server CPU us/msg | encrypted / plaintext (per-run: median, worst) |")
print("|---|---|---|---|")
for case, label in labels.items():
    e, p = cpu.get((case, "encrypted"), []), cpu.get((case, "plaintext"), [])
    r = [a / b for a, b in zip(e, p) if b]
    if r:
        print(f"| {label} | {statistics.median(p):.2f} | {statistics.median(e):.2f} "
              f"| {statistics.median(r):.3f}, {max(r):.3f} |")
PY
