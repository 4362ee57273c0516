# Shared by the benchmark scripts: sourced after they set `root`.
# Gives: $work (a temp dir removed on exit), $pids (servers killed on exit),
# free_port, wait_port, start_tallyq and run_bench (which read $secs).
set -euo pipefail
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A loopback port that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (at most 10 s) until something listens on the loopback port.
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Starts BINARY serve on a fresh data dir; sets $server_dir, $server_port, $server_pid.
start_tallyq() {
  server_dir="$work/tq-$RANDOM"
  server_port=$(free_port)
  local mport; mport=$(free_port)
  "$1" serve --data-dir "$server_dir" --listen "127.0.0.1:$server_port" --metrics-listen "127.0.0.1:$mport" >/dev/null 2>&1 &
  server_pid=$!; pids+=("$server_pid"); wait_port "$server_port"
  # The credential is written just before the broker listens, and can lag
  # the port: wait (at most 30 s) for it too.
  for _ in $(seq 300); do [ -s "$server_dir/operator.token" ] && return 0; sleep 0.1; done
  echo "the broker wrote no operator.token in $server_dir" >&2; return 1
}

# Runs CLIENT's `bench` for $secs against a fresh `SERVER serve`, prints the
# bench's result line, stops the server and removes its data dir.
run_bench() { # args: client binary, server binary, then bench flags
  local client="$1"
  start_tallyq "$2"; shift 2
  timeout $((secs + 60)) "$client" --server "http://127.0.0.1:$server_port" --token-file "$server_dir/operator.token" \
    bench --setup bench --duration-secs "$secs" --server-pid "$server_pid" "$@"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  rm -rf "$server_dir"
}
