#!/usr/bin/env bash
# Checks the Prometheus configuration, rules and rule unit tests, and the Grafana
# dashboard and provisioning. Installs promtool (Debian package `prometheus`) when
# it is missing. Exit status 0 when everything passes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
fi

prom=deploy/prometheus
graf=deploy/grafana

echo "== promtool check config"
promtool check config "$prom/prometheus.yml"

echo "== promtool check rules"
promtool check rules "$prom"/rules/*.yml

echo "== promtool test rules"
promtool test rules "$prom"/tests/*.yml

echo "== Grafana dashboard and provisioning"
python3 - "$graf" <<'EOF'
import json, os, re, sys

graf = sys.argv[1]
problems = []

def panels_of(panels):
    for p in panels or []:
        yield p
        yield from panels_of(p.get("panels"))

dashboards = sorted(os.path.join(graf, "dashboards", n)
                    for n in os.listdir(os.path.join(graf, "dashboards")) if n.endswith(".json"))
if not dashboards:
    problems.append("no dashboard JSON in dashboards/")
for path in dashboards:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: {e}")
        continue
    if not d.get("uid") or not d.get("title"):
        problems.append(f"{path}: dashboard needs a uid and a title")
    names = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    for needed in ("datasource", "language"):
        if needed not in names:
            problems.append(f"{path}: no `{needed}` template variable")
    ids = set()
    for p in panels_of(d.get("panels")):
        where = f"{path}: panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate panel id")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if not p.get("datasource"):
            problems.append(f"{where}: no datasource")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for t in targets:
            if not (t.get("expr") or "").strip():
                problems.append(f"{where}: target {t.get('refId')} has no expression")
            if not t.get("datasource"):
                problems.append(f"{where}: target {t.get('refId')} has no datasource")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{where}: no gridPos")

# Provisioning files: the data source uid must be the one the dashboard defaults to.
ds = open(os.path.join(graf, "provisioning", "datasources", "hotline.yml"), encoding="utf-8").read()
if not re.search(r"^\s*uid:\s*hotline-prometheus\s*$", ds, re.M):
    problems.append("provisioning/datasources/hotline.yml: uid is not hotline-prometheus")
if not re.search(r"^\s*url:\s*http://127\.0\.0\.1:9090\s*$", ds, re.M):
    problems.append("provisioning/datasources/hotline.yml: url is not http://127.0.0.1:9090")
prov = open(os.path.join(graf, "provisioning", "dashboards", "hotline.yml"), encoding="utf-8").read()
if not re.search(r"^\s*path:\s*\S+", prov, re.M):
    problems.append("provisioning/dashboards/hotline.yml: provider has no path")

for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"  SUCCESS: {len(dashboards)} dashboard(s), provisioning files")
EOF

echo "== dashboard PromQL parses and names only defined rules"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$graf/promql_in_dashboard.py" --exprs >"$tmp/exprs"
python3 "$graf/promql_in_dashboard.py" --metrics >"$tmp/metrics"
python3 - "$tmp/exprs" >"$tmp/dashboard-rules.yml" <<'EOF'
import json, sys
exprs = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
print("groups:\n  - name: dashboard-queries\n    rules:")
for i, e in enumerate(exprs):
    print(f"      - record: dashboard:query_{i}:check\n        expr: {json.dumps(e)}")
EOF
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null
echo "  SUCCESS: $(wc -l <"$tmp/exprs") queries parse; they need $(wc -l <"$tmp/metrics") metrics from the service"

echo "monitoring checks passed"
