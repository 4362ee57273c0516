#!/usr/bin/env bash
# Validates deploy/: the Kubernetes manifests against the Kubernetes schemas
# (kubernetes-validate from PyPI, installed into a private virtualenv), the
# Prometheus configs and alerting rules with promtool (Debian's `prometheus`
# package, installed when missing) and the rules' unit tests
# (prometheus/alerts_test.yml), that the Grafana dashboard parses, and the
# Dockerfile (check-image.sh: hadolint, then the image's steps as a script).
#
#   deploy/validate.sh                   the manifests in deploy/k8s
#   deploy/validate.sh RENDERED.yaml...  manifests as you will apply them:
#                                        also refused while a secret is still
#                                        a REPLACE-WITH-... placeholder
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TMPDIR:-/tmp}/tallyq-deploy-venv"

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet kubernetes-validate
fi

# Fails when any of the files still holds a placeholder secret.
refuse_placeholders() {
  if grep -n 'REPLACE-WITH-' "$@"; then
    echo "placeholder secrets above: replace them with real ones (e.g. openssl rand -base64 48)" >&2
    return 1
  fi
}

# The readiness probe must ask a service that maintenance mode leaves
# SERVING (it turns tallyq.v1.Broker NOT_SERVING), and no scrape job may
# target loopback (down for ever in a cluster).
check_semantics() {
  "$venv/bin/python" - "$@" <<'PY'
import sys, yaml
ok = True
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "StatefulSet":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            service = (c.get("readinessProbe") or {}).get("grpc", {}).get("service", "")
            if service not in ("tallyq.v1.Operator", "tallyq.v1.Admin", "tallyq.v1.Billing"):
                print(f"{path}: readiness probe asks {service!r}: maintenance mode would "
                      "take the pod out of its Service; ask tallyq.v1.Operator", file=sys.stderr)
                ok = False
sys.exit(0 if ok else 1)
PY
}

if [ "$#" -gt 0 ]; then
  "$venv/bin/kubernetes-validate" --strict "$@"
  check_semantics "$@"
  refuse_placeholders "$@"
  echo "rendered manifests are valid"
  exit 0
fi

"$venv/bin/kubernetes-validate" --strict "$here"/k8s/*.yaml
check_semantics "$here"/k8s/*.yaml
# The shipped Secret holds placeholders on purpose: the check must catch them.
if refuse_placeholders "$here/k8s/secret.yaml" >/dev/null 2>&1; then
  echo "the placeholder check missed deploy/k8s/secret.yaml's placeholders" >&2
  exit 1
fi

if ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool check rules "$here/prometheus/alerts.yml"
(cd "$here/prometheus" && promtool test rules alerts_test.yml)
# The Kubernetes service discovery needs no cluster to be checked.
for config in prometheus.yml prometheus-standalone.yml; do
  promtool check config --syntax-only "$here/prometheus/$config"
done
if grep -n '127\.0\.0\.1\|localhost' "$here/prometheus/prometheus.yml"; then
  echo "prometheus.yml (the cluster's) scrapes loopback: that target is down for ever in a cluster" >&2
  exit 1
fi

# The router: its ConfigMap is what `tallyq router render` writes from the
# shard map (when a tallyq binary is at hand), and nginx (Debian's package,
# installed when missing) accepts the config. Debian's nginx predates
# `http2 on;` and `resolve`, and the pods' names resolve only in the cluster,
# so nginx -t checks the same map rendered with those swapped for loopback.
tallyq_bin="${TALLYQ_BIN:-}"
for candidate in "$here/../target/release/tallyq" "$here/../target/debug/tallyq"; do
  [ -z "$tallyq_bin" ] && [ -x "$candidate" ] && tallyq_bin="$candidate"
done
if [ -n "$tallyq_bin" ]; then
  rendered="$(mktemp)"
  "$tallyq_bin" router render --shard-map "$here/k8s/shard-map.toml" --configmap tallyq-router --out "$rendered" 2>/dev/null
  diff -u "$here/k8s/router-configmap.yaml" "$rendered" \
    || { echo "deploy/k8s/router-configmap.yaml is stale: render it again from shard-map.toml" >&2; exit 1; }
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  fi
  ngx="$(mktemp -d)"
  openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=router -days 1 \
    -keyout "$ngx/tls.key" -out "$ngx/tls.crt" 2>/dev/null
  sed -e '/^http2_directive/d' -e '/^resolver/d' -e 's/[a-z0-9.-]*\.svc\.cluster\.local:/127.0.0.1:/' \
      -e "s#/etc/tallyq-router-tls#$ngx#" -e "s#runtime_dir = .*#runtime_dir = \"$ngx\"#" \
      "$here/k8s/shard-map.toml" > "$ngx/shard-map.toml"
  "$tallyq_bin" router render --shard-map "$ngx/shard-map.toml" --out "$ngx/nginx.conf" 2>/dev/null
  "$(command -v nginx || echo /usr/sbin/nginx)" -t -q -p "$ngx" -e stderr -c "$ngx/nginx.conf"
  rm -rf "$ngx" "$rendered"
  echo "router: ConfigMap matches shard-map.toml; nginx accepts the config"
else
  echo "router: no tallyq binary (set TALLYQ_BIN or cargo build): ConfigMap not re-rendered" >&2
  exit 1
fi

python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"; print("dashboard:", len(d["panels"]), "panels")' \
  "$here/grafana/tallyq-dashboard.json"
bash "$here/check-image.sh"
echo "deploy/ is valid"
