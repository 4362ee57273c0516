#!/usr/bin/env bash
# Where encryption at rest spends the broker's CPU, from a profile: a figure
# that other load on the machine moves far less than msg/s or CPU per message
# (both change with how well commits batch).
#
#   RUNS=3 bash benches/encryption-profile.sh     # RUNS=3 SECONDS_PER_RUN=8 by default
#   BIN=/path/to/tallyq bash benches/encryption-profile.sh   # another build, not rebuilt
#
# Builds the shipped broker, then for each of cost-of-encryption.sh's cases
# (4 producers x batches of 100 x 1 KiB, durable; produce only, + 1 consumer,
# + 1 consumer and 100 device ids) runs `tallyq bench` against a fresh broker
# under `perf record -e cpu-clock` (no hardware counters needed) and prints,
# per case, the share of the broker's samples in encryption's own code:
# AES-GCM of sets and fields, the HMAC-SHA256 of device ids, dedup ids and
# synthetic nonces (ring), and `tallyq::crypto`. Median and worst over RUNS.
# Needs `perf` (linux-tools); reads the broker's symbols from its debug info.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-8}"
freq="${PERF_FREQ:-1999}"
source "$root/benches/lib.sh"
command -v perf >/dev/null || { echo "perf is not installed (linux-tools)" >&2; exit 1; }

# BIN=path profiles another build of the broker (e.g. an older commit's).
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
fi
bin="${BIN:-$root/target/release/tallyq}"

# Symbols that are encryption's work and nothing else's.
crypto_re='ring_core_.*(aes|gcm|ghash|sha256)|ring::(aead|hmac|digest|hkdf)|tallyq::crypto::|getrandom'

results="$work/shares.txt"
for i in $(seq "$runs"); do
  for case_id in d0-c0 d0-c1 d100-c1; do
    devices="${case_id#d}"; devices="${devices%-c*}"; consumers="${case_id#*-c}"
    start_tallyq "$bin" || { echo "run $i $case_id: the broker did not start; left out" >&2; continue; }
    perf record -q -e cpu-clock -F "$freq" -o "$work/perf.data" -p "$server_pid" -- sleep $((secs + 2)) >/dev/null 2>&1 &
    perf_pid=$!
    line=$(timeout $((secs + 60)) "$bin" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
      bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" --consumers "$consumers" --devices "$devices") \
      || { echo "run $i $case_id failed; left out" >&2; line=""; }
    wait "$perf_pid" || true
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    rm -rf "$server_dir"
    share=$(perf report -i "$work/perf.data" --no-children --sort symbol -F overhead,sym --stdio 2>/dev/null \
      | grep -E "$crypto_re" | awk '{gsub("%","",$1); s+=$1} END {printf "%.2f", s}' || true)
    samples=$(perf report -i "$work/perf.data" --stdio 2>/dev/null | sed -n 's/^# Samples: \([0-9K.]*\).*/\1/p' | head -1 || true)
    [ -n "$line" ] && echo "$i $case_id share=$share samples=$samples $line" | tee -a "$results" >&2
  done
done
python3 - "$results" "$runs" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[2:] if "=" in kv)
    cpu = float(f["server_cpu_s"]) * 1e6 / float(f["produced"]) if f.get("server_cpu_s", "-") != "-" else float("nan")
    rows.setdefault(parts[1], []).append((float(f["share"]), cpu, float(f["msgs_per_sec"])))
labels = {"d0-c0": "produce only", "d0-c1": "produce + 1 consumer",
          "d100-c1": "produce + 1 consumer, 100 device ids"}
print(f"\nshare of the broker's cpu-clock samples in encryption (ring AES-GCM/HMAC, tallyq::crypto), {sys.argv[2]} runs\n")
print("| case | share median (worst) | server CPU us/msg median | msg/s median |")
print("|---|---|---|---|")
for case, label in labels.items():
    r = rows.get(case, [])
    if r:
        s = [x[0] for x in r]
        print(f"| {label} | {statistics.median(s):.2f}% ({max(s):.2f}%) | "
              f"{statistics.median(x[1] for x in r):.2f} | {statistics.median(x[2] for x in r):.0f} |")
PY
