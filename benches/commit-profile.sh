#!/usr/bin/env bash
# Where the group commit's threads spend scenario 1's time (benches/compare.sh s1:
# 4 producers x batches of 100 x 1 KiB, produce only): runs the load against a fresh
# broker, traces the committer thread (gather, segment fdatasync, sled apply + flush +
# log fdatasync, replies; and the applier thread of the reverted two-thread commit
# when the build has one, BIN=) with `perf trace` for TRACE_SECS
# in the middle of the run, and prints per thread: fdatasync count and median, the
# share of the traced time in fdatasync, parked on a futex (waiting for work, for the
# hand-off or for sled's flush) and the rest (CPU or runnable), plus the bench line
# with the broker's CPU per message.
#
#   bash benches/commit-profile.sh            # SECONDS_PER_RUN=8 TRACE_SECS=3
#   BIN=path/to/tallyq bash benches/commit-profile.sh   # another build
# Needs perf (linux-perf) and permission to trace the broker (root, or
# kernel.perf_event_paranoid <= 1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${SECONDS_PER_RUN:-8}"
trace_secs="${TRACE_SECS:-3}"
source "$root/benches/lib.sh"
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  bin="$root/target/release/tallyq"
fi

start_tallyq "$bin"
"$bin" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
  bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" --consumers 0 > "$work/line" &
client=$!
sleep $(( (secs - trace_secs) / 2 ))
tracers=()
for name in committe applier; do
  tid=$(grep -l "$name" /proc/"$server_pid"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5 || true)
  [ -n "$tid" ] || continue
  perf trace -t "$tid" -T -o "$work/trace-$name.txt" -- sleep "$trace_secs" >/dev/null 2>&1 &
  tracers+=("$!")
done
for t in "${tracers[@]}"; do wait "$t" || true; done
wait "$client"
produced_line="$(cat "$work/line")"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true

python3 - "$work" "$produced_line" <<'PY'
import glob, os, re, statistics, sys
work, line = sys.argv[1], sys.argv[2]
f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
cpu_us = float(f["server_cpu_s"]) / max(int(f["produced"]), 1) * 1e6
print(f"s1 {f['msgs_per_sec']} msg/s, ack p50 {f['ack_p50_us']} us, broker CPU {cpu_us:.2f} us per message")
for path in sorted(glob.glob(os.path.join(work, "trace-*.txt"))):
    name = {"committe": "committer", "applier": "applier"}[path.rsplit("-", 1)[1][:-4]]
    syncs, parked, first, last = [], 0.0, None, None
    for row in open(path):
        m = re.match(r"\s*([\d.]+) \(\s*([\d.]+) ms\): (\w+)\((.*)", row)
        if not m:
            continue
        t, d, call = float(m.group(1)), float(m.group(2)), m.group(3)
        first = t if first is None else first
        last = t + d
        if call == "fdatasync":
            syncs.append(d)
        elif call == "futex" and "WAIT" in m.group(4):
            parked += d
    span = (last - first) if first is not None else 0
    if not span:
        print(f"{name}: nothing traced")
        continue
    synced = sum(syncs)
    print(f"{name}: {len(syncs)} fdatasync in {span:.0f} ms (median {statistics.median(syncs) if syncs else 0:.3f} ms); "
          f"fdatasync {synced / span:.0%}, parked {parked / span:.0%}, other {1 - (synced + parked) / span:.0%}")
PY
