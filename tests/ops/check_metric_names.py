#!/usr/bin/env python3
"""Check that every metric the alert rules and the Grafana dashboard query
exists in real /metrics scrapes, under the name Prometheus stores it as.

    check_metric_names.py --rules alerts.yml --dashboard riptide.json SCRAPE...

A SCRAPE is a saved OpenMetrics text from GET /metrics; the names of all of
them together are what exists. OpenMetrics exposes a counter family `x` as
the sample `x_total`, a histogram `x` as `x_bucket`, `x_sum` and `x_count`, a
gauge `x` as `x`: an expression must use the sample names (`rate(x_total[5m])`,
`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`), so `x` alone
for a counter is reported, as is any name no scrape has. `up` (and the other
series Prometheus makes itself at a scrape) always exists. It also checks how
each name is used: counters and histogram series only inside rate(),
irate() or increase(), gauges never there, and `_bucket` series only under
histogram_quantile() with `le` kept.

Expressions come from every `expr` of the rules file and every panel
target's `expr` (rows' nested panels included) and the `label_values()` /
`query_result()` queries of the dashboard's variables. Exit status 1 with a
list of what is wrong; 0 with a summary.
"""

import argparse
import json
import re
import sys

# Series Prometheus adds for every scrape target.
SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

FUNCTIONS = {
    # aggregations
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
    "bottomk", "quantile", "count_values",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv",
    "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "ln", "log10", "log2",
    "minute", "month", "predict_linear", "rate", "resets", "round", "scalar",
    "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time",
}
KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}
RANGE_FUNCTIONS = {"rate", "irate", "increase"}

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
BARE_GROUPING = re.compile(r"\b(group_left|group_right)\b")
OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z_$]+")
TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|\(|\)|\S")
NUMBER = re.compile(r"^[0-9]")


def strip(expr):
    """The expression without strings, label matchers, ranges, grouping
    clauses and offsets: what is left is functions, operators, numbers and
    metric names."""
    expr = STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    keeps_le = any("le" in [p.strip() for p in m.group(0).split("(", 1)[1].rstrip(")").split(",")]
                   for m in GROUPING.finditer(expr) if m.group(1) in ("by",))
    expr = GROUPING.sub(" ", expr)
    expr = BARE_GROUPING.sub(" ", expr)
    expr = OFFSET.sub(" ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)
    # Numbers (1e3 would read as a name), not the digits of a name.
    expr = re.sub(r"(?<![A-Za-z0-9_:.])[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?", " ", expr)
    return expr, keeps_le


def names_in(expr):
    """[(metric name, innermost enclosing function or None)], and problems."""
    if "__name__" in expr:
        return [], ["selects by __name__: not supported by this check"]
    text, keeps_le = strip(expr)
    found, problems, stack = [], [], []
    tokens = TOKEN.findall(text)
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "(":
            stack.append(None)
        elif tok == ")":
            if stack:
                stack.pop()
        elif re.match(r"^[A-Za-z_:]", tok):
            if nxt == "(":
                if tok not in FUNCTIONS:
                    problems.append(f"unknown function {tok}()")
                stack.append(tok)
                tokens[i + 1] = ""  # its paren is the function's
            elif tok in KEYWORDS:
                continue
            else:
                enclosing = next((f for f in reversed(stack) if f), None)
                found.append((tok, enclosing))
        elif NUMBER.match(tok):
            continue
    if any(n.endswith("_bucket") for n, _ in found):
        if "histogram_quantile" not in text:
            problems.append("a _bucket series outside histogram_quantile()")
        elif not keeps_le:
            problems.append("histogram_quantile() over buckets not grouped by le")
    return found, problems


def read_scrapes(paths):
    """Sample name -> family type ('counter', 'histogram', 'gauge', ...)."""
    families, samples = {}, set()
    for path in paths:
        with open(path) as f:
            text = f.read()
        if not text.rstrip().endswith("# EOF"):
            sys.exit(f"{path}: not a whole OpenMetrics scrape (no '# EOF')")
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                families[name] = kind.strip()
            elif line and not line.startswith("#"):
                samples.add(re.split(r"[{ ]", line, 1)[0])
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
        "summary": ["", "_sum", "_count", "_created"],
        "info": ["_info"],
        "stateset": [""],
        "gauge": [""],
        "unknown": [""],
    }
    exposed = {}
    for family, kind in families.items():
        for suffix in suffixes.get(kind, [""]):
            exposed[family + suffix] = kind
    for name in samples:
        if name not in exposed:
            sys.exit(f"sample {name} has no TYPE line in the scrapes")
    return exposed


def rules_exprs(path):
    """[(where, expr)] from a rules file. Read with a small reader of the
    YAML this repository writes (`expr:` on one line, or a `|` / `>` block),
    cross-checked with PyYAML when it is installed."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, current, rules = [], None, 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*-\s+(alert|record):\s*(\S+)", line)
        if m:
            current, rules = m.group(2), rules + 1
        m = re.match(r"^(\s*)expr:\s*(.*?)\s*$", line)
        if m:
            indent, value = len(m.group(1)), m.group(2)
            if value in ("|", "|-", ">", ">-", "|+", ">+"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                value = " ".join(b for b in block if b)
                out.append((f"{path}: {current}", value))
                continue
            if value[:1] in "'\"" and value[-1:] == value[:1]:
                value = value[1:-1]
            out.append((f"{path}: {current}", value))
        i += 1
    if len(out) != rules:
        sys.exit(f"{path}: {rules} rules but {len(out)} expr fields read: YAML this check does not read")
    try:
        import yaml
    except ImportError:
        return out
    with open(path) as f:
        doc = yaml.safe_load(f)
    parsed = [" ".join(str(r["expr"]).split()) for g in doc["groups"] for r in g["rules"]]
    mine = [" ".join(e.split()) for _, e in out]
    if parsed != mine:
        sys.exit(f"{path}: the expressions read differ from PyYAML's:\n{mine}\n{parsed}")
    return out


def dashboard_exprs(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((f"{path}: panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        m = re.match(r"^\s*(label_values|query_result)\((.*)\)\s*$", query or "", re.S)
        if not m:
            sys.exit(f"{path}: variable {v.get('name')}: query {query!r} not understood")
        arg = m.group(2)
        if m.group(1) == "label_values":
            if "," not in arg:
                continue  # label_values(label): no metric
            arg = arg.rsplit(",", 1)[0]
        out.append((f"{path}: variable {v.get('name')!r}", arg))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--dashboard", action="append", default=[])
    ap.add_argument("scrapes", nargs="+")
    args = ap.parse_args()

    exposed = read_scrapes(args.scrapes)
    exprs = []
    for r in args.rules:
        exprs += rules_exprs(r)
    for d in args.dashboard:
        exprs += dashboard_exprs(d)
    if not exprs:
        sys.exit("no expressions found")

    problems, used = [], set()
    for where, expr in exprs:
        found, issues = names_in(expr)
        problems += [f"{where}: {p}\n    {expr}" for p in issues]
        if not found:
            problems.append(f"{where}: no metric name in {expr!r}")
        for name, enclosing in found:
            used.add(name)
            if name in SYNTHETIC:
                continue
            kind = exposed.get(name)
            if kind is None:
                hint = ""
                for suffix in ("_total", "_bucket", "_count", "_sum"):
                    if name + suffix in exposed:
                        hint = f" (exposed as {name + suffix}, a {exposed[name + suffix]})"
                problems.append(f"{where}: {name} is in no scrape{hint}")
                continue
            in_range = enclosing in RANGE_FUNCTIONS
            if kind in ("counter", "histogram") and not in_range:
                problems.append(f"{where}: {name} (a {kind} series) outside rate()/irate()/increase()")
            if kind == "gauge" and in_range:
                problems.append(f"{where}: {name} is a gauge, inside {enclosing}()")

    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {len(exprs)} expressions, {len(used)} metric names, all in the scrapes "
          f"({len(exposed)} series names exposed)")


if __name__ == "__main__":
    main()
