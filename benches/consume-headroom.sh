#!/usr/bin/env bash
# The one consumer's headroom (SPEC §7: one consumer keeps up at half of the
# broker's own maximum produce rate in every run), measured two ways, each on
# a fresh broker and data dir:
#
# - drain: a backlog of messages is produced first (`tallyq bench
#   --consumers 0`, 4 producers x batches of 100 x 1 KiB), then one
#   `tallyq consume --window 1000` drains it alone, acking every push. Prints
#   messages/s of the drain and the broker's CPU (utime+stime from
#   /proc/PID/stat) per drained message: what the consume path can do at
#   most, and what it costs, with nothing else running.
# - s3: compare.sh's scenario 3 with tallyq only: `tallyq bench --consumers 1
#   --rate RATE` (4 producers x batches of 100 x 1 KiB, one consumer acking
#   every push), its result line plus the broker CPU per delivered message.
#
#   bash benches/consume-headroom.sh      # RUNS=3 RATE=76000 SECONDS_PER_RUN=10 BACKLOG_SECS=5
#
# Runs alternate drain, s3, drain, s3, ...; the last lines give medians and
# the worst run of each figure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-10}"
rate="${RATE:-76000}"
backlog_secs="${BACKLOG_SECS:-5}"
source "$root/benches/lib.sh"
if [ -z "${TALLYQ_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
fi
tallyq="${TALLYQ_BIN:-$root/target/release/tallyq}"

# CPU seconds (utime+stime) of a process.
cpu_of() { python3 -c 'import sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/100)' "$1"; }

drain_run() {
  start_tallyq "$tallyq"
  local cli=("$tallyq" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token")
  "${cli[@]}" tenant create drain >/dev/null
  "${cli[@]}" tenant update drain --set-quota produce_units_per_second=1000000000 \
    --set-quota produce_burst_units=1000000000 --set-quota consume_units_per_second_per_topic=1000000000 \
    --set-quota control_calls_per_second=1000000000 --set-quota max_tenant_storage_bytes=1099511627776 >/dev/null
  local secret
  secret=$("${cli[@]}" key create drain --scope produce,consume,manage 2>/dev/null | tail -1)
  printf '%s' "$secret" > "$work/drain.key"
  local tq=("$tallyq" --server "http://127.0.0.1:$server_port" --token-file "$work/drain.key")
  "${tq[@]}" topic create bench >/dev/null
  "${tq[@]}" sub create bench bench --lock-seconds 30 >/dev/null
  local line produced before after t0 t1 consumed
  line=$("${tq[@]}" bench --consumers 0 --duration-secs "$backlog_secs")
  produced=$(sed -E 's/.*produced=([0-9]+).*/\1/' <<<"$line")
  before=$(cpu_of "$server_pid")
  t0=$(date +%s.%N)
  consumed=$("${tq[@]}" consume bench bench --window 1000 --idle-ms 1000 2>&1 >/dev/null | sed -E 's/consumed ([0-9]+).*/\1/')
  t1=$(date +%s.%N)
  after=$(cpu_of "$server_pid")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
  # The consumer stops after 1 s without a message and waits 0.1 s for its last acks.
  python3 - "$produced" "$consumed" "$t0" "$t1" "$before" "$after" <<'PY'
import sys
produced, consumed = int(sys.argv[1]), int(sys.argv[2])
t0, t1, before, after = map(float, sys.argv[3:])
wall = t1 - t0 - 1.1
print(f"drain produced={produced} consumed={consumed} seconds={wall:.2f} "
      f"msgs_per_sec={consumed / wall:.0f} server_cpu_s={after - before:.2f} "
      f"cpu_us_per_msg={(after - before) * 1e6 / max(consumed, 1):.1f}")
PY
}

s3_run() {
  start_tallyq "$tallyq"
  local line
  line=$(timeout $((secs + 60)) "$tallyq" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" --consumers 1 --rate "$rate")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
  python3 - "$line" <<'PY'
import sys
f = dict(kv.split("=", 1) for kv in sys.argv[1].split()[1:])
per = float(f["server_cpu_s"]) * 1e6 / max(int(f["delivered"]), 1)
print(f"s3 {sys.argv[1]} cpu_us_per_delivered={per:.1f}")
PY
}

results="$work/results.txt"
for i in $(seq "$runs"); do
  drain_run | tee -a "$results"
  s3_run | tee -a "$results"
done
python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[1:] if "=" in kv)
    rows.setdefault(parts[0], []).append(f)
def show(kind, key, worst):
    vals = [float(r[key]) for r in rows.get(kind, [])]
    if vals:
        print(f"{kind} {key}: median {statistics.median(vals):,.1f} worst {worst(vals):,.1f} "
              f"runs {', '.join(f'{v:,.0f}' if v >= 100 else f'{v:.1f}' for v in vals)}")
show("drain", "msgs_per_sec", min)
show("drain", "cpu_us_per_msg", max)
show("s3", "msgs_per_sec", min)
show("s3", "deliver_p50_us", max)
show("s3", "deliver_p99_us", max)
show("s3", "cpu_us_per_delivered", max)
PY
