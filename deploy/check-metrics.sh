#!/usr/bin/env bash
# Starts a broker on loopback with a temp data dir, drives a little traffic
# through the CLI (produce, consume, a refused request), scrapes /metrics and
# lints the exposition with `promtool check metrics` (Debian's `prometheus`
# package, installed when missing). Bounded: everything stops within a minute.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
bin="$root/target/debug/tallyq"
work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); metrics=$(free_port)
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$grpc" --metrics-listen "127.0.0.1:$metrics" \
  > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -f "$work/data/operator.token" ] && grep -q listening "$work/serve.log" && break; sleep 0.1; done
q() { timeout 20 "$bin" --server "http://127.0.0.1:$grpc" --token-file "$work/data/operator.token" "$@"; }
q tenant create acme >/dev/null
key=$(q key create acme --scope produce,consume,manage 2>/dev/null)
t() { timeout 20 "$bin" --server "http://127.0.0.1:$grpc" --token "$key" "$@"; }
t topic create sensors >/dev/null
t sub create sensors dash --lock-seconds 10 >/dev/null
t produce sensors a b c >/dev/null 2>&1
t consume sensors dash --max 3 --idle-ms 2000 >/dev/null 2>&1
t topic create 'bad name' >/dev/null 2>&1 || true
for n in 2 3 4 5 6; do t topic create "extra-$n" >/dev/null 2>&1 || true; done   # the 6th: a quota refusal
sleep 2.5   # one gauge refresh
curl -fsS "http://127.0.0.1:$metrics/metrics" > "$work/metrics.txt" 2>/dev/null \
  || python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$metrics/metrics').read().decode())" > "$work/metrics.txt"
grep -q 'tallyq_produced_messages_total{node="node-1",tenant="acme"} 3' "$work/metrics.txt"
grep '^tallyq_quota_refusals_total{' "$work/metrics.txt" | grep 'kind="topics"' | grep -q 'tenant="acme"'
promtool check metrics < "$work/metrics.txt"
echo "metrics exposition: $(grep -c '^tallyq_' "$work/metrics.txt") tallyq series, promtool clean"
