#!/usr/bin/env bash
# What the global allocator buys and costs (issue 13 item 3's memory
# constants, issue 15's per-request CPU): the broker as shipped (mimalloc,
# src/main.rs) against the `bench-system-alloc` measurement build (glibc
# malloc), same commit, same everything else.
#
#   bash benches/allocator.sh              # RUNS=3 SECONDS_PER_RUN=8 by default
#   PARTS="cpu" bash benches/allocator.sh  # only some parts (default: "memory cpu"; also "kernel")
#   CALLGRIND=1 ...                        # also benches/edge-profile.sh's callgrind per build
#   MIMALLOC_TRY="MIMALLOC_PURGE_DELAY=1000 MIMALLOC_PURGE_DELAY=10" ...
#       cpu part: also the mimalloc build with each of these variables set
#       (one more build row each; mimalloc reads MIMALLOC_* over main.rs's settings)
#
# memory: `cargo bench --bench memory_bound` (all its phases, MEMORY_BOUND_RUNS
#         = RUNS runs, each on a fresh broker process, RSS from /proc) once per
#         build; prints each build's "over N runs" lines (medians, worst).
# cpu:    scenario 4's load (64 producers x one 256 B message per request,
#         produce only; `tallyq bench`), RUNS runs per build, alternating the
#         order every run, a fresh broker and data dir every time: the
#         broker's CPU (utime + stime from /proc) per stored message and its
#         peak RSS; medians, worst runs, and the mimalloc/glibc ratio taken
#         within each run.
# MIMALLOC_* variables (e.g. MIMALLOC_PURGE_DELAY=0) reach the mimalloc
# broker, to try mimalloc's options without rebuilding.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-8}"
parts=" ${PARTS:-memory cpu} "
source "$root/benches/lib.sh"

# MIMALLOC_BIN / GLIBC_BIN: measure other builds (cpu and kernel parts) instead
# of building this checkout's.
if [ -z "${MIMALLOC_BIN:-}${GLIBC_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq \
    --features bench-system-alloc --target-dir "$root/target/system-alloc"
fi
mimalloc="${MIMALLOC_BIN:-$root/target/release/tallyq}"
glibc="${GLIBC_BIN:-$root/target/system-alloc/release/tallyq}"

for var in ${MIMALLOC_TRY:-}; do
  # A broker started with VAR=VALUE in its environment (exec keeps the pid).
  printf '#!/bin/sh\nexec env %q %q "$@"\n' "$var" "$mimalloc" >"$work/$var"
  chmod +x "$work/$var"
done

if [[ "$parts" == *" memory "* ]]; then
  for build in mimalloc glibc; do
    flags=()
    [ "$build" = glibc ] && flags=(--features bench-system-alloc --target-dir "$root/target/system-alloc")
    # --profile release: the same artifacts as the cargo build above (no rebuild).
    MEMORY_BOUND_RUNS="$runs" cargo bench --quiet --profile release --manifest-path "$root/Cargo.toml" \
      --bench memory_bound "${flags[@]}" >"$work/memory-$build.txt"
    cat "$work/memory-$build.txt" >&2
    echo "memory_bound, $build:"
    grep '^over ' "$work/memory-$build.txt" | sed 's/^/  /'
  done
fi

if [[ "$parts" == *" cpu "* ]]; then
  results="$work/cpu.txt"
  load=(--producers 64 --batch 1 --size 256 --consumers 0)
  builds=(mimalloc glibc ${MIMALLOC_TRY:-})
  for i in $(seq "$runs"); do
    # Rotate the order every run.
    order=("${builds[@]:$(( (i - 1) % ${#builds[@]} ))}" "${builds[@]:0:$(( (i - 1) % ${#builds[@]} ))}")
    for build in "${order[@]}"; do
      case "$build" in mimalloc) bin="$mimalloc" ;; glibc) bin="$glibc" ;; *) bin="$work/$build" ;; esac
      echo "$i $build $(run_bench "$mimalloc" "$bin" "${load[@]}")" >>"$results"
    done
  done
  cat "$results" >&2
  python3 - "$results" "$runs" <<'PY'
import sys, statistics
rows = {}  # build -> {run: (broker CPU us/msg, peak RSS MB, msgs/s)}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[2:] if "=" in kv)
    if f.get("server_cpu_s", "-") == "-" or int(f.get("produced", 0)) == 0:
        continue
    rows.setdefault(parts[1], {})[parts[0]] = (
        float(f["server_cpu_s"]) * 1e6 / int(f["produced"]),
        float(f["server_peak_rss_mb"]), float(f["msgs_per_sec"]))
print(f"\nscenario 4 load (64 producers x 1 x 256 B, produce only), {sys.argv[2]} runs\n")
print("| build | broker CPU us/msg median (worst) | peak RSS MB median (worst) | msgs/s median |")
print("|---|---|---|---|")
for b in rows:
    r = list(rows.get(b, {}).values())
    if r:
        cpu, rss, rate = zip(*r)
        print(f"| {b} | {statistics.median(cpu):.1f} ({max(cpu):.1f}) "
              f"| {statistics.median(rss):.0f} ({max(rss):.0f}) | {statistics.median(rate):.0f} |")
g = rows.get("glibc", {})
for b in rows:
    if b == "glibc":
        continue
    m = rows[b]
    ratios = [m[k][0] / g[k][0] for k in sorted(m) if k in g]
    if ratios:
        print(f"\nbroker CPU per message {b} / glibc, per run: "
              f"{', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}, "
              f"worst {max(ratios):.3f}")
PY
fi

# kernel: what returning memory costs the kernel, which neither callgrind nor
# the allocator's own counters see: madvise (mimalloc's purge) and munmap
# calls and page faults per stored message, counted by `perf stat` on the
# broker during one scenario 4 run per build (and per MIMALLOC_TRY setting).
if [[ "$parts" == *" kernel "* ]]; then
  load=(--producers 64 --batch 1 --size 256 --consumers 0)
  events=syscalls:sys_enter_madvise,syscalls:sys_enter_munmap,page-faults
  echo "scenario 4 load, per stored message (perf stat on the broker; $secs s per build):"
  for build in mimalloc glibc ${MIMALLOC_TRY:-}; do
    case "$build" in mimalloc) bin="$mimalloc" ;; glibc) bin="$glibc" ;; *) bin="$work/$build" ;; esac
    start_tallyq "$bin"
    perf stat -x, -e "$events" -p "$server_pid" -o "$work/perf.txt" &
    perf_pid=$!
    line=$(timeout $((secs + 60)) "$mimalloc" --server "http://127.0.0.1:$server_port" \
      --token-file "$server_dir/operator.token" bench --setup bench --duration-secs "$secs" \
      --server-pid "$server_pid" "${load[@]}")
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; rm -rf "$server_dir"
    python3 - "$build" "$line" "$work/perf.txt" <<'PY'
import re, sys
build, line, perf = sys.argv[1:]
n = int(re.search(r"produced=(\d+)", line).group(1))
counts = {}
for row in open(perf):
    f = row.strip().split(",")
    if len(f) > 2 and f[0].isdigit():
        counts[f[2].split(":")[-1]] = int(f[0])
cpu = float(re.search(r"server_cpu_s=([0-9.]+)", line).group(1)) * 1e6 / max(n, 1)
print(f"  {build}: {n} messages, broker CPU {cpu:.1f} us/msg; per message: " + ", ".join(
    f"{k.replace('sys_enter_', '')} {v / max(n, 1):.3f}" for k, v in counts.items()))
PY
  done
fi

if [ -n "${CALLGRIND:-}" ]; then
  for build in mimalloc glibc; do
    bin="$mimalloc"; [ "$build" = glibc ] && bin="$glibc"
    echo "callgrind, $build:"
    RUNS=1 bash "$root/benches/edge-profile.sh" "$bin" | sed 's/^/  /'
  done
fi
