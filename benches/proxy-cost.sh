#!/usr/bin/env bash
# What the router hop costs (SPEC §9): `tallyq bench` against one broker
# directly, and through nginx running the config `tallyq router render`
# writes, alternating, a fresh broker (and a fresh nginx) for every run.
#
#   bash benches/proxy-cost.sh          # RUNS=3 SECONDS_PER_RUN=10 by default
#   TALLYQ_BIN=target/debug/tallyq ...  # measure another build (default: release)
#
# Scenario "batch100": 4 producers x batches of 100 x 1 KiB + 1 consumer, full speed.
# Scenario "batch1":   4 producers x batches of 1 x 1 KiB + 1 consumer, full speed
#                      (one request per message: the per-request cost of the hop).
# Prints, per scenario, the median msgs/s of each path, the median and worst of
# the per-run ratios router/direct (each ratio from the same round), and the
# median and worst produce-ack and produce-to-delivery p99.
# nginx runs one worker: the machine's cores are shared by the broker, the
# load tool and nginx, as they would be on one small host.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
secs="${SECONDS_PER_RUN:-10}"
source "$root/benches/lib.sh"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
if [ -z "${TALLYQ_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
  tallyq="$root/target/release/tallyq"
else
  tallyq="$(cd "$(dirname "$TALLYQ_BIN")" && pwd)/$(basename "$TALLYQ_BIN")"
fi

# Runs the bench against a fresh broker, through a fresh nginx when $1 is
# "router"; prints the bench's result line.
run_path() { # args: direct|router, then bench flags
  local path="$1"; shift
  start_tallyq "$tallyq"
  local target="$server_port" ngx_pid=""
  if [ "$path" = router ]; then
    local rdir="$work/router-$RANDOM"; mkdir -p "$rdir"
    target=$(free_port)
    cat > "$rdir/shard-map.toml" <<EOF
default_node = "node-1"
[router]
listen = "127.0.0.1:$target"
runtime_dir = "$rdir"
worker_processes = "1"
[nodes.node-1]
address = "127.0.0.1:$server_port"
[tenants]
bench = "node-1"
EOF
    "$tallyq" router render --shard-map "$rdir/shard-map.toml" --out "$rdir/nginx.conf" 2>/dev/null
    "$nginx_bin" -p "$rdir" -e stderr -c "$rdir/nginx.conf" -g 'daemon off;' 2>"$rdir/error.log" &
    ngx_pid=$!; pids+=("$ngx_pid"); wait_port "$target"
  fi
  timeout $((secs + 60)) "$tallyq" --server "http://127.0.0.1:$target" --token-file "$server_dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" "$@"
  if [ -n "$ngx_pid" ]; then kill "$ngx_pid"; wait "$ngx_pid" 2>/dev/null || true; fi
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
}

results="$work/results.txt"
for i in $(seq "$runs"); do
  for scenario in batch100 batch1; do
    batch=100; [ "$scenario" = batch1 ] && batch=1
    if (( i % 2 )); then order="direct router"; else order="router direct"; fi
    for path in $order; do
      echo "$i $scenario $path $(run_path "$path" --batch "$batch")" >> "$results"
    done
  done
  echo "round $i of $runs done" >&2
done
[ -n "${RESULTS_COPY:-}" ] && cp "$results" "$RESULTS_COPY"

python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    run, scenario, path = parts[0], parts[1], parts[2]
    f = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
    rows.setdefault(scenario, {}).setdefault(path, {})[run] = f
for scenario, paths in rows.items():
    d, r = paths["direct"], paths["router"]
    rate = lambda p: [float(v["msgs_per_sec"]) for v in p.values()]
    ratios = [float(r[k]["msgs_per_sec"]) / float(d[k]["msgs_per_sec"]) for k in d if k in r]
    print(f"{scenario}: direct {statistics.median(rate(d)):.0f} msgs/s, router {statistics.median(rate(r)):.0f} msgs/s (medians of {len(d)}); "
          f"router/direct ratio median {statistics.median(ratios):.3f}, worst {min(ratios):.3f}")
    for key in ("ack_p99_us", "deliver_p99_us"):
        dv = [int(v[key]) for v in d.values()]
        rv = [int(v[key]) for v in r.values()]
        print(f"  {key}: direct median {statistics.median(dv):.0f} worst {max(dv)}; router median {statistics.median(rv):.0f} worst {max(rv)}")
PY
