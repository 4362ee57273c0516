#!/usr/bin/env bash
# Runs the Python and Node examples, and the stock-client drain check, against
# a real broker: the built binary on an ephemeral port with a temp data dir,
# a tenant and keys made with the CLI. Installs the clients' packages from
# the registries (pip into examples/python/.venv, npm into examples/node) and
# checks what each example printed. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EXAMPLES=$ROOT/examples

say() { printf '== %s\n' "$*"; }
fail() { printf 'examples: FAILED: %s\n' "$*" >&2; exit 1; }

# --- what the examples need on this machine --------------------------------
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        fail "missing ${missing[*]} (install them, or run as root where apt-get can)"
    fi
fi

# --- the broker --------------------------------------------------------------
cargo build --quiet --bin tallyq
BIN=$ROOT/target/debug/tallyq
TMP=$(mktemp -d)
BROKER_PID=
cleanup() {
    if [[ -n $BROKER_PID ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN" serve --data-dir "$TMP/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    >"$TMP/serve.log" 2>&1 &
BROKER_PID=$!
ADDR=
for _ in $(seq 1 300); do
    ADDR=$(sed -n 's/^tallyq listening on \([0-9.:]*\).*/\1/p' "$TMP/serve.log" | head -n1)
    [[ -n $ADDR ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$TMP/serve.log" >&2; fail "the broker exited"; }
    sleep 0.1
done
[[ -n $ADDR ]] || { cat "$TMP/serve.log" >&2; fail "the broker did not say where it listens"; }
say "broker listening on $ADDR (data in $TMP/data)"

op() { "$BIN" --server "http://$ADDR" --token-file "$TMP/data/operator.token" "$@"; }
op tenant create acme --name "Acme IoT" >/dev/null
op tenant create bulk --name "Bulk check" >/dev/null
# acme: a produce rate low enough that the examples meet a refusal with
# retry-after-ms and must honour it.
op tenant update acme --set-quota produce_units_per_second=4 --set-quota produce_burst_units=4 >/dev/null
op tenant update bulk --set-quota produce_units_per_second=1000000 \
    --set-quota produce_burst_units=1000000 \
    --set-quota consume_units_per_second_per_topic=1000000 >/dev/null
ACME_KEY=$(op key create acme --scope produce,consume,manage 2>/dev/null)
BULK_KEY=$(op key create bulk --scope produce,consume,manage 2>/dev/null)

# expect FILE PATTERN...: every extended regex matches a line of FILE.
expect() {
    local file=$1; shift
    for pattern in "$@"; do
        grep -Eq -- "$pattern" "$file" || { cat "$file" >&2; fail "$(basename "$file"): no line matches /$pattern/"; }
    done
}
# The lines both examples must print for 10 messages of 1 unit.
EXAMPLE_LINES=(
    '^produced offsets=\[0, ?1\] units=2$'
    '^refused RESOURCE_EXHAUSTED: retrying after [0-9]+ ms$'
    '^resent first batch: duplicate=(True|true) same_offsets=(True|true) units=0$'
    "^consumed offset=9 attempt=1 payload='reading 9'$"
    '^consumed 10 messages on one stream, all acked$'
    '^usage day=[0-9-]+ topic=demo-[a-z]+ produced_units=10 delivered_units=10 message_units=20$'
)

# --- Python ------------------------------------------------------------------
VENV=$EXAMPLES/python/.venv
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$EXAMPLES/python/requirements.txt"
say "python example"
(cd "$EXAMPLES/python" && "$VENV/bin/python" example.py --server "$ADDR" --key "$ACME_KEY") \
    | tee "$TMP/python.out"
expect "$TMP/python.out" "${EXAMPLE_LINES[@]}"

# --- Node --------------------------------------------------------------------
(cd "$EXAMPLES/node" && npm install --silent --no-audit --no-fund >/dev/null)
say "node example"
(cd "$EXAMPLES/node" && node example.js --server "$ADDR" --key "$ACME_KEY") | tee "$TMP/node.out"
expect "$TMP/node.out" "${EXAMPLE_LINES[@]}"

# --- responses fit a stock client (SPEC §2) ----------------------------------
say "stock grpcio at default limits: drain 256 KiB messages through Consume and Fetch"
(cd "$EXAMPLES/python" && "$VENV/bin/python" drain_check.py --server "$ADDR" --key "$BULK_KEY" --count 24) \
    | tee "$TMP/drain.out"
expect "$TMP/drain.out" \
    '^consume received 24 in [0-9]+ pushes$' \
    '^fetch received 24 in [0-9]+ calls$' \
    '^billed delivered_units=12288 delivered_messages=48; received 48 messages = 12288 units$' \
    '^drain check ok$'

say "examples ok"
