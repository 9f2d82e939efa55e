"""The Grafana dashboard (deploy/grafana/peak.json, README "Installing") uses only metrics the
daemons export: every PromQL expression of its panels and variables is parsed for its metric
names (identifiers that are not functions, keywords, label names or Grafana variables) and its
label names, and each is checked against the /metrics of peak dns, peak controller and
peak agent (with its XDP filter attached) started here, so the dashboard cannot drift from the
metrics. Also: the JSON is a dashboard Grafana imports (panels with targets, a Prometheus
datasource variable that every panel uses), and it has the panels the issue asks for.

Root: a network namespace, the agent's routes and XDP filter."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

PEAK = os.path.abspath(os.environ.get("PEAK_BIN", "build/peak"))
SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(SRC, "deploy/grafana/peak.json")

# PromQL words that are not metric names: operators' keywords, and aggregation modifiers
# (their label lists are removed before names are read)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan"}
# series Prometheus itself makes for every target, not in any /metrics
SYNTHETIC = {"up"}
# labels the scrape adds (target labels)
TARGET_LABELS = {"instance", "job"}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'


def promql_names(expr):
    """(metric names, label names) an expression uses. Grafana's $variables and strings go
    first; label lists of by/without/on/ignoring/group_x and {matchers} give label names;
    [ranges] go; what is left are names, functions (followed by '('), keywords and numbers."""
    labels = set()
    e = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]", "1", expr)

    def matchers(m):
        # label names of {a="x", b!~"y"}: strings removed first, so commas inside are gone
        inner = re.sub(STRING, '""', m.group(1))
        labels.update(re.findall(rf"({IDENT})\s*(?:=~|!~|!=|=)", inner))
        return " "
    e = re.sub(STRING, lambda m: m.group(0) if False else '""', e)
    e = re.sub(r"\{([^{}]*)\}", matchers, e)
    e = re.sub(r'""', " ", e)

    def grouping(m):
        labels.update(re.findall(IDENT, m.group(2)))
        return " "
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", grouping, e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    names = set()
    for m in re.finditer(rf"(?<![\w:.]){IDENT}", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names, labels


def variable_names(query):
    """label_values(METRIC{...}, LABEL) and query_result(EXPR) of a template variable."""
    m = re.fullmatch(rf"\s*label_values\(\s*(?:({IDENT})?(\{{[^}}]*\}})?\s*,\s*)?({IDENT})\s*\)\s*",
                     query)
    if m:
        names, labels = promql_names((m.group(1) or "") + (m.group(2) or ""))
        return names, labels | {m.group(3)}
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query)
    if m:
        return promql_names(m.group(1))
    raise AssertionError(f"unknown variable query: {query}")


def expressions(dash):
    """(where, kind, text) of every PromQL expression: panels' targets (rows' panels too) and
    query variables."""
    out = []
    panels = list(dash["panels"])
    while panels:
        p = panels.pop(0)
        panels += p.get("panels", [])
        for t in p.get("targets", []):
            out.append((p["title"], "expr", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"${v['name']}", "variable", q))
    return out


def test_promql_names_are_read_properly():
    expr = ('sum by (service, endpoint) (rate(peak_x_total{instance=~"$instance",a!="b,c=d"}'
            '[$__rate_interval])) / ignoring(k) group_left (j) peak_y + on() vector(1)'
            ' > bool 0 or histogram_quantile(0.9, peak_h_bucket offset 5m) and inf')
    names, labels = promql_names(expr)
    assert names == {"peak_x_total", "peak_y", "peak_h_bucket"}
    assert labels == {"service", "endpoint", "instance", "a", "k", "j"}
    assert variable_names("label_values(peak_dns_queries_total{a=\"1\"}, rcode)") == \
        ({"peak_dns_queries_total"}, {"a", "rcode"})
    assert variable_names("label_values(instance)") == (set(), {"instance"})


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def test_dashboard_is_grafana_json_on_a_prometheus_variable():
    dash = load()
    assert dash["uid"] == "peak" and dash["title"] and dash["schemaVersion"] >= 30
    ds = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["query"] == "prometheus"
    ref = {"type": "prometheus", "uid": "${%s}" % ds[0]["name"]}
    ids = set()
    for p in dash["panels"]:
        assert p["id"] not in ids
        ids.add(p["id"])
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == ref and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ref and t["expr"].strip(), p["title"]
    # what the issue asks for
    text = json.dumps(dash)
    for wanted in ("peak_dns_queries_total", "peak_dns_responses_total",
                   "peak_dns_steered_answers_total", "peak_controller_endpoint_slices",
                   "peak_controller_endpoint_healthy", "peak_agent_fast_downs_total",
                   "peak_agent_filter_packets_total"):
        assert wanted in text, wanted
    for by in ("by (rcode)", "by (type)", "by (service, endpoint)", "by (verdict)"):
        assert by in text, by


def scrape(ns, port):
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "2",
                        f"http://[::1]:{port}/metrics"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def exported(text):
    """{metric name: set of label names, or None while it has no sample} of a /metrics text:
    # TYPE lines and samples (a histogram's or summary's _bucket, _sum, _count belong to its
    name too)."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"# TYPE ({IDENT}) (\w+)$", line)
        if m:
            out.setdefault(m.group(1), None)
            if m.group(2) in ("histogram", "summary"):
                for suffix in ("_bucket", "_sum", "_count"):
                    out.setdefault(m.group(1) + suffix, None)
            continue
        m = re.match(rf"({IDENT})(?:\{{(.*)\}})? ", line)
        if m and not line.startswith("#"):
            have = out.get(m.group(1)) or set()
            out[m.group(1)] = have | set(
                re.findall(rf"({IDENT})=\"", re.sub(r'\\.', "", m.group(2) or "")))
    return out


@pytest.fixture(scope="module")
def metrics():
    """The union of the three daemons' /metrics, each started in one namespace: peak dns
    (answering a steered AAAA first), the controller, the agent of node1 with its XDP filter
    on a veth (under 'ip netns exec', which hides /sys/fs/bpf: the filter is not pinned, so
    nothing stays behind) connected to the controller."""
    ns = f"gd{os.getpid() % 10000}x"
    tmp = tempfile.mkdtemp(prefix="peak-dash-")
    procs = []
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        for c in ("ip link set lo up", "ip link add d0 type veth peer name d1",
                  "ip link set d1 up", "ip link set d0 up",
                  "ip -6 addr add 2001:db8:100:1::1/64 dev d0 nodad",
                  "ip -6 addr add 2001:db8:ff::1/64 dev d0 nodad"):
            subprocess.run(["ip", "netns", "exec", ns, *c.split()], check=True)
        conf = os.path.join(tmp, "peak.yaml")
        text = open(os.path.join(SRC, "examples/peak.yaml")).read()
        text = text.replace("  - name: node1\n", "  - name: node1\n    filter-dev: d0\n")
        assert "filter-dev: d0" in text
        with open(conf, "w") as f:
            f.write(text)
        ports = {"dns": 19153, "controller": 19154, "agent": 19155}
        cmds = {
            "dns": ["dns", "--config", conf, "--listen", "[::1]:5353", "--threads", "1"],
            "controller": ["controller", "--config", conf, "--listen", "[::1]:4000",
                           "--state", "none"],
            "agent": ["agent", "--config", conf, "--node", "node1",
                      "--controller", "[::1]:4000"],
        }
        logs = {}
        for name, args in cmds.items():
            logs[name] = os.path.join(tmp, name + ".log")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, PEAK, *args, "--metrics", f"[::1]:{ports[name]}"],
                stdout=open(logs[name], "w"), stderr=subprocess.STDOUT))

        def log(name):
            return open(logs[name]).read()

        deadline = time.monotonic() + 20
        while not ("XDP filter attached to d0" in log("agent") and
                   all(scrape(ns, p) for p in ports.values())):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                {n: log(n) for n in logs}
            time.sleep(0.1)
        # a steered answer, so that its counter has samples (and labels) too
        subprocess.run(["ip", "netns", "exec", ns, "dig", "@::1", "-p", "5353", "+short",
                        "+time=1", "+tries=3", "api.svc.example.", "AAAA"],
                       capture_output=True, check=True)
        out = {}
        for name, port in ports.items():
            for metric, labels in exported(scrape(ns, port)).items():
                if labels is None:
                    out.setdefault(metric, None)
                else:
                    out[metric] = (out.get(metric) or set()) | labels
        yield out
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def unknown(dash, metrics):
    """What the dashboard names that the daemons do not export: [(where, what)]. Label names
    are checked where each metric of the expression has samples here (the filter's signature
    hits have none until a signature is installed)."""
    bad = []
    for where, kind, text in expressions(dash):
        names, labels = promql_names(text) if kind == "expr" else variable_names(text)
        for n in names - SYNTHETIC:
            if n not in metrics:
                bad.append((where, f"metric {n}"))
        if any(metrics.get(n) is None for n in names - SYNTHETIC):
            continue
        have = set().union(*(metrics.get(n) or set() for n in names)) | TARGET_LABELS
        for lb in labels - have:
            bad.append((where, f"label {lb} of {sorted(names)}"))
    return bad


def test_every_metric_of_the_dashboard_is_exported(metrics):
    # the daemons' metrics this test relies on are all there
    for m in ("peak_dns_queries_total", "peak_controller_endpoint_slices",
              "peak_agent_filter_packets_total", "peak_agent_slice_routes"):
        assert m in metrics, m
    assert {"service", "endpoint"} <= metrics["peak_dns_steered_answers_total"]
    dash = load()
    assert len(expressions(dash)) > 20
    assert unknown(dash, metrics) == []
    # and the check would see a drift: a renamed metric and a label no metric has
    drifted = json.loads(json.dumps(dash).replace("peak_dns_responses_total",
                                                  "peak_dns_answers_total")
                         .replace("by (verdict)", "by (class)"))
    bad = unknown(drifted, metrics)
    assert ("Responses by rcode", "metric peak_dns_answers_total") in bad
    assert any(w == "Filter verdicts by class" and "label class" in what for w, what in bad)
