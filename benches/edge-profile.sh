#!/usr/bin/env bash
# Per-request cost of one message per request (issue 15, "edge"): where a
# one-message produce from 64 producers spends its instructions, by layer,
# and the broker's and the load tool's CPU per message.
#
#   bash benches/edge-profile.sh [BINARY]      (default: target/release/tallyq)
#
# 1. callgrind: the broker runs under valgrind; after a 1 s warm-up run (setup
#    excluded) its counters are zeroed, `tallyq bench --producers 64 --batch 1
#    --size 256 --consumers 0` runs for $CG_SECS (20) s, the counters are
#    dumped, and each layer's inclusive instructions are divided by the
#    messages stored. Instruction counts do not move with the machine's load.
#    (Under valgrind sha2 cannot see SHA-NI and runs its soft code: its figure
#    is an upper bound.)
# 2. /proc: $RUNS (3) native runs of $SECS (8) s: broker CPU (utime+stime) and
#    the load tool's CPU (/usr/bin/time) per message.
# EXTRA="--produce-stream" profiles the same load with each producer on its own
# ProduceStream (one message at a time) instead of one request per message.
# KEEP_PROFILE=FILE keeps the annotated profile. Needs valgrind (callgrind_annotate) and /usr/bin/time.
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/benches/lib.sh"
bin="${1:-$root/target/release/tallyq}"
CG_SECS="${CG_SECS:-20}"; SECS="${SECS:-8}"; RUNS="${RUNS:-3}"
# shellcheck disable=SC2206
load=(--producers 64 --batch 1 --size 256 --consumers 0 ${EXTRA:-})

wait_token() { for _ in $(seq 600); do [ -s "$1/operator.token" ] && return 0; sleep 0.2; done; return 1; }

# --- 1. callgrind, per layer -------------------------------------------------
dir="$work/cg"; port=$(free_port); mport=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" serve --data-dir "$dir" \
  --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" >"$work/cg.log" 2>&1 &
vp=$!; pids+=("$vp")
wait_token "$dir" || { echo "the broker under valgrind wrote no token" >&2; exit 1; }
"$bin" --server "http://127.0.0.1:$port" --token-file "$dir/operator.token" \
  bench --setup warm --producers 1 --batch 1 --size 256 --consumers 0 --duration-secs 1 >/dev/null
callgrind_control -z "$vp" >/dev/null
line=$("$bin" --server "http://127.0.0.1:$port" --token-file "$dir/operator.token" \
  bench --setup bench "${load[@]}" --duration-secs "$CG_SECS")
callgrind_control -d "$vp" >/dev/null
kill "$vp"; wait "$vp" 2>/dev/null || true
n=$(grep -o 'produced=[0-9]*' <<<"$line" | cut -d= -f2)
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$work/cg.out.1" 2>/dev/null >"$work/incl.txt"
cp "$work/incl.txt" "${KEEP_PROFILE:-/dev/null}" 2>/dev/null || true
echo "callgrind: $n messages; instructions per message, inclusive"
total=$(grep "PROGRAM TOTALS" "$work/incl.txt" | awk '{gsub(",","",$1); print $1}')
printf '%8d  %s\n' $((total / n)) "whole broker"
layer() { # label, the end of a function's name as callgrind_annotate prints it
  # (the largest entry that ends there, before any " [object]")
  local v; v=$(awk -v p="$2" '{ i = index($0, p); if (!i) next; r = substr($0, i + length(p));
    if (r == "" || substr(r, 1, 2) == " [") { gsub(",", "", $1); print $1; exit } }' "$work/incl.txt")
  printf '%8d  %s\n' $(( ${v:-0} / n )) "$1"; }
layer "request task (hyper H2Stream)"        "hyper::proto::h2::server::H2Stream<F,B,Ex> as core::future::future::Future>::poll"
layer "  store gate and everything inside"   "gate.rs:<tallyq::server::gate::Gate<S> as tower_service::Service<http::request::Request<B>>>::call::{{closure}}"
layer "  Broker service (decode, handler, encode)" "<tallyq::proto::v1::broker_server::BrokerServer<T> as tower_service::Service<http::request::Request<B>>>::call::{{closure}}"
layer "    produce handler (broker domain)"  "src/api/broker.rs:<tallyq::api::broker::BrokerService as tallyq::proto::v1::broker_server::Broker>::produce::{{closure}}"
layer "  auth interceptor"                   "auth.rs:<tallyq::api::auth::AuthInterceptor as tonic::service::interceptor::Interceptor>::call"
layer "    SHA-256 of the key (soft under valgrind)" "sha2::sha256::compress256"
layer "  grpc-timeout layer (+ rpc metrics call)" "grpc_timeout::GrpcTimeout<S> as tower_service::Service<http::request::Request<ReqBody>>>::call"
layer "  rpc metrics (histogram)"            "tallyq::observability::Metrics::observe_rpc"
layer "  tracing span (0 at info)"           "tracing::span::Span::new"
layer "HTTP/2 connection task"               "tonic::transport::server::serve_connection::{{closure}}"
layer "  hpack decode"                       "h2::hpack::decoder::Decoder::decode"
layer "committer thread"                     "src/storage/committer.rs:std::sys::backtrace::__rust_begin_short_backtrace"
layer "  sled apply_batch"                   "sled::tree::Tree::apply_batch"
layer "allocation (__rust_alloc)"            "__rustc::__rust_alloc"
layer "free (__rust_dealloc)"                "__rustc::__rust_dealloc"
layer "memcpy"                               "__memcpy_avx_unaligned_erms"
layer "SipHash"                              "<core::hash::sip::Hasher<S> as core::hash::Hasher>::write"

# --- 2. /proc, CPU per message -------------------------------------------------
echo "native runs ($RUNS x $SECS s): broker and load-tool CPU per message"
for run in $(seq "$RUNS"); do
  start_tallyq "$bin"
  out=$( { /usr/bin/time -f "client_cpu=%U %S" "$bin" --server "http://127.0.0.1:$server_port" \
    --token-file "$server_dir/operator.token" bench --setup bench "${load[@]}" \
    --duration-secs "$SECS" --server-pid "$server_pid"; } 2>&1 )
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; rm -rf "$server_dir"
  python3 - "$out" <<'PY'
import re, sys
o = sys.argv[1]
get = lambda k: re.search(k + r"=([0-9.]+)", o).group(1)
n = int(get("produced")); cu, cs = re.search(r"client_cpu=([0-9.]+) ([0-9.]+)", o).groups()
print("  msgs/s=%s broker_cpu_us_per_msg=%.1f client_cpu_us_per_msg=%.1f rss_mb=%s" % (
    get("msgs_per_sec"), float(get("server_cpu_s")) * 1e6 / n,
    (float(cu) + float(cs)) * 1e6 / n, get("server_peak_rss_mb")))
PY
done
