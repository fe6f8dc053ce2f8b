#!/usr/bin/env python3
"""Print every PromQL expression of the hotline dashboard and the metrics it needs.

Usage:
  promql_in_dashboard.py [DASHBOARD.json] [--rules DIR] [--exprs | --metrics]
                         [--include-rules] [--raw]

Output (default), one item per line, tab-separated:
  expr<TAB><PromQL>     every query of the dashboard (panels and template variables)
  metric<TAB><name>     every metric the service must export for those queries,
                        as written in the queries (histograms as _bucket/_sum/_count);
                        recording rules (names with a colon) are followed through
                        the rule files down to the metrics they read
  prometheus<TAB><name> series Prometheus makes itself (up, ALERTS), not in /metrics
--exprs prints only the expressions, --metrics only the metric names, without tags.
--include-rules adds the expressions of every recording and alerting rule.
Grafana variables are replaced by ordinary values ($__interval -> 5m, $language ->
.*, $threshold -> 20, ...) so that every line is plain PromQL; --raw keeps them.

Needs only the Python standard library. Exit status 1 when a query names a
recording rule that no rule file defines (dashboard and rules out of step).
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARD = os.path.join(HERE, "dashboards", "hotline.json")
DEFAULT_RULES = os.path.join(HERE, "..", "prometheus", "rules")

GRAFANA_VARIABLES = [
    ("${datasource}", "hotline-prometheus"),
    ("$__rate_interval", "5m"),
    ("$__interval", "5m"),
    ("$__range", "1h"),
    ("${language}", ".*"),
    ("$language", ".*"),
    ("${threshold}", "20"),
    ("$threshold", "20"),
]

# Series that Prometheus creates itself; the service does not export them.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)?(\{.*\})?\s*,")


def dashboard_queries(dashboard):
    """Every query string of the dashboard: panel targets and query variables."""
    out = []

    def walk_panels(panels):
        for panel in panels or []:
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    out.append(expr)
            walk_panels(panel.get("panels"))

    walk_panels(dashboard.get("panels"))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not isinstance(query, str):
            continue
        # label_values(metric, label) is Grafana's, not PromQL: keep the selection.
        m = LABEL_VALUES.match(query)
        if m:
            query = (m.group(1) or "") + (m.group(2) or "")
        query = re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", query)
        if query.strip():
            out.append(query)
    return out


def load_rules(rules_dir):
    """Map of recording-rule name to expression, and every rule expression, from
    the rule files. Reads only the plain layout the hotline rule files use
    (`- record:`/`- alert:` then `expr:` inline or as a `|` block)."""
    records, exprs = {}, []
    try:
        names = sorted(os.listdir(rules_dir))
    except OSError as e:
        raise SystemExit(f"cannot read rule folder {rules_dir}: {e}")
    for name in names:
        if not name.endswith((".yml", ".yaml")):
            continue
        path = os.path.join(rules_dir, name)
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        current, i = None, 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^\s*-\s*(record|alert):\s*(\S+)\s*$", line)
            if m:
                current = (m.group(1), m.group(2))
                i += 1
                continue
            m = re.match(r"^(\s*)expr:\s*(.*)$", line)
            if m and current:
                indent, rest = len(m.group(1)), m.group(2).strip()
                if rest in ("|", "|-", ">", ">-"):
                    block = []
                    i += 1
                    while i < len(lines) and (not lines[i].strip() or
                                              len(lines[i]) - len(lines[i].lstrip()) > indent):
                        block.append(lines[i].strip())
                        i += 1
                    expr = " ".join(l for l in block if l)
                else:
                    expr = rest.strip("'\"") if rest[:1] in "'\"" else rest
                    i += 1
                exprs.append(expr)
                if current[0] == "record":
                    records[current[1]] = expr
                current = None
                continue
            i += 1
    return records, exprs


def strip_noise(expr):
    """The expression without strings, label matchers and ranges, so that only
    metric, function and keyword names are left as identifiers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^{}]*\}", " ", expr)
    expr = re.sub(r"\[[^\[\]]*\]", " ", expr)
    return expr


def names_in(expr):
    """Metric names an expression selects (recording-rule names included)."""
    text = strip_noise(expr)
    names = []
    pos = 0
    while True:
        m = IDENT.search(text, pos)
        if not m:
            break
        word, end = m.group(0), m.end()
        rest = text[end:].lstrip()
        pos = end
        if word in LABEL_LIST_KEYWORDS and rest.startswith("("):
            close = text.find(")", end)
            pos = close + 1 if close >= 0 else len(text)
            continue
        if word in KEYWORDS or rest.startswith("("):
            continue
        if word in AGGREGATIONS and re.match(r"(by|without)\b", rest):
            continue
        names.append(word)
    return names


def service_metrics(exprs, records):
    """Metrics the service must export, plus Prometheus' own series, following
    recording rules to what they read. Unknown recording rules are reported."""
    metrics, internal, missing = set(), set(), set()
    seen = set()
    stack = [n for e in exprs for n in names_in(e)]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if ":" in name:
            if name in records:
                stack.extend(names_in(records[name]))
            else:
                missing.add(name)
        elif name in PROMETHEUS_SERIES:
            internal.add(name)
        else:
            metrics.add(name)
    return sorted(metrics), sorted(internal), sorted(missing)


def substitute(expr):
    for var, value in GRAFANA_VARIABLES:
        expr = expr.replace(var, value)
    return expr


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dashboard", nargs="?", default=DEFAULT_DASHBOARD)
    p.add_argument("--rules", default=DEFAULT_RULES, help="folder of Prometheus rule files")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--exprs", action="store_true", help="print only the expressions")
    only.add_argument("--metrics", action="store_true", help="print only the metric names")
    p.add_argument("--include-rules", action="store_true",
                   help="also every recording and alerting rule expression")
    p.add_argument("--raw", action="store_true", help="keep Grafana variables as written")
    args = p.parse_args()

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{args.dashboard}: {e}", file=sys.stderr)
        return 1
    records, rule_exprs = load_rules(args.rules)

    exprs = dashboard_queries(dashboard)
    if args.include_rules:
        exprs += rule_exprs
    if not args.raw:
        exprs = [substitute(e) for e in exprs]
    one_line = [" ".join(e.split()) for e in exprs]
    metrics, internal, missing = service_metrics(one_line, records)

    for e in one_line:
        print(e if args.exprs else f"expr\t{e}") if not args.metrics else None
    if not args.exprs:
        for m in metrics:
            print(m if args.metrics else f"metric\t{m}")
        if not args.metrics:
            for m in internal:
                print(f"prometheus\t{m}")
    for m in missing:
        print(f"{args.dashboard}: recording rule {m} is not defined in {args.rules}",
              file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
