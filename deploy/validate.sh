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

python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"; print("dashboard:", len(d["panels"]), "panels")' \
  "$here/grafana/tallyq-dashboard.json"
bash "$here/check-image.sh"
echo "deploy/ is valid"
