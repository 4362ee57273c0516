#!/usr/bin/env bash
# Validates deploy/: the Kubernetes manifests against the Kubernetes schemas
# (kubernetes-validate from PyPI, installed into a private virtualenv), the
# Prometheus config and alerting rules with promtool (Debian's `prometheus`
# package, installed when missing), and that the Grafana dashboard parses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TMPDIR:-/tmp}/tallyq-deploy-venv"

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet kubernetes-validate
fi
"$venv/bin/kubernetes-validate" --strict "$here"/k8s/*.yaml

if ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool check rules "$here/prometheus/alerts.yml"
# The Kubernetes service discovery needs no cluster to be checked.
promtool check config --syntax-only "$here/prometheus/prometheus.yml"

python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"; print("dashboard:", len(d["panels"]), "panels")' \
  "$here/grafana/tallyq-dashboard.json"
echo "deploy/ is valid"
