#!/usr/bin/env bash
# What encryption at rest costs end to end (SPEC §7: at most 5% of durable
# produce throughput).
#
#   RUNS=3 bash benches/cost-of-encryption.sh     # RUNS=5 SECONDS_PER_RUN=6 by default
#   ALLOC=glibc RUNS=3 bash benches/cost-of-encryption.sh   # both builds on glibc malloc
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

# ALLOC=glibc: both builds with the `bench-system-alloc` feature (glibc malloc
# instead of mimalloc; benches/allocator.sh), to tell the allocator's part.
if [ "${ALLOC:-mimalloc}" = glibc ]; then
  features=(--features bench-system-alloc); enc_dir="$root/target/system-alloc"
  plain_features="bench-unencrypted,bench-system-alloc"; plain_dir="$root/target/system-alloc-unencrypted"
else
  features=(); enc_dir="$root/target"
  plain_features="bench-unencrypted"; plain_dir="$root/target/unencrypted"
fi
# ENCRYPTED_BIN / PLAINTEXT_BIN: measure other builds (e.g. an older commit's)
# instead of building this checkout's.
if [ -z "${ENCRYPTED_BIN:-}${PLAINTEXT_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
    "${features[@]}" --target-dir "$enc_dir"
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
    --features "$plain_features" --target-dir "$plain_dir"
fi
encrypted="${ENCRYPTED_BIN:-$enc_dir/release/tallyq}"
plaintext="${PLAINTEXT_BIN:-$plain_dir/release/tallyq}"
echo "allocator: ${ALLOC:-mimalloc}; encrypted $encrypted, plaintext $plaintext" >&2

# Like lib.sh's run_bench, but prints nothing rather than failing the script
# when one bench run fails (noted on stderr).
run() { # args: broker binary, then bench flags
  start_tallyq "$1" || { echo "a broker did not start: $*" >&2; return 0; }
  shift
  timeout $((secs + 60)) "$encrypted" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" "$@" || echo "a bench run failed: $*" >&2
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
}

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
# (case, build) -> {run: (produced msg/s, delivered msg/s, server CPU us/msg)}
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
    if "msgs_per_sec" not in f:
        continue  # a failed run (said on stderr)
    cpu = None
    if f.get("server_cpu_s", "-") != "-" and float(f["produced"]) > 0:
        cpu = float(f["server_cpu_s"]) * 1e6 / float(f["produced"])
    rows.setdefault((parts[1], parts[2]), {})[parts[0]] = (
        float(f["msgs_per_sec"]), float(f["delivered"]) / float(f["seconds"]), cpu)

def pairs(case):
    """(encrypted, plaintext) of the runs where both builds ran, in run order."""
    e, p = rows.get((case, "encrypted"), {}), rows.get((case, "plaintext"), {})
    return [(e[r], p[r]) for r in sorted(e) if r in p]

def summary(ratios, worst):
    return f"{statistics.median(ratios):.3f} ({worst(ratios):.3f})" if ratios else "-"

labels = {"d0-c0": "produce only", "d0-c1": "produce + 1 consumer",
          "d100-c1": "produce + 1 consumer, 100 device ids"}
print(f"\nmedians of {sys.argv[2]} runs, 4 producers x batches of 100 x 1 KiB, durable, loopback\n")
print("| case | runs | plaintext produce msg/s | encrypted produce msg/s | produce ratio median (worst) | consume ratio median (worst) |")
print("|---|---|---|---|---|---|")
for case, label in labels.items():
    both = pairs(case)
    if not both:
        print(f"| {label} | 0 | - | - | - | - |")
        continue
    produce = [e[0] / p[0] for e, p in both if p[0]]
    consume = [e[1] / p[1] for e, p in both if p[1]]
    print(f"| {label} | {len(both)} | {statistics.median(p[0] for _, p in both):.0f} "
          f"| {statistics.median(e[0] for e, _ in both):.0f} | {summary(produce, min)} | {summary(consume, min)} |")
# Server CPU per stored message: steadier than msg/s on a shared machine (it
# does not count time the broker spent waiting for a core), though it still
# moves with how well commits batch.
print("\n| case | plaintext server CPU us/msg | encrypted server CPU us/msg | encrypted / plaintext (per-run: median, worst) |")
print("|---|---|---|---|")
for case, label in labels.items():
    both = [(e[2], p[2]) for e, p in pairs(case) if e[2] and p[2]]
    if both:
        r = [e / p for e, p in both]
        print(f"| {label} | {statistics.median(p for _, p in both):.2f} | {statistics.median(e for e, _ in both):.2f} "
              f"| {statistics.median(r):.3f}, {max(r):.3f} |")
PY
