"""The Grafana dashboard (docs/grafana/portcullis.json) queries only what the
gateway exports: every metric name in every panel's query is a family of a
real scrape of GET /metrics, and every label a query groups or filters by is
a label of that family."""

import http.client
import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families

from harness import check, eq, free_port, test, wait_tcp

TOKEN = "admin-token-dashboard-0123456789"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "portcullis.json")
NAME = re.compile(r"\b((?:portcullis|process)_[a-z0-9_]+)\b")
# label matchers {a="x", b=~"y"} and by (a, b) clauses, after a metric name
SELECTOR = re.compile(r"\b((?:portcullis|process)_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
SCRAPE_LABELS = {"instance", "job", "le"}   # added by Prometheus, or the bucket bound


def _scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def _exported(text):
    """{sample or family name: (family, set of label names seen)}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        labels = set()
        for s in fam.samples:
            labels |= set(s.labels)
        labels.discard("le")
        names = {fam.name}
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names |= {fam.name + "_bucket", fam.name + "_sum", fam.name + "_count"}
        for n in names:
            out[n] = (fam, labels)
    return out


def _queries(dash):
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]


@test("dashboard: every metric and label a panel queries is exported by GET /metrics")
def dashboard(env):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    ids = [p["id"] for p in dash["panels"]]
    eq(len(ids), len(set(ids)), "panel ids are unique")
    check(any(v["name"] == "datasource" for v in dash["templating"]["list"]),
          "the dashboard picks its Prometheus data source")

    admin = free_port()
    cfg = env.config({"admin": {"listen": "127.0.0.1:%d" % admin}})
    gw = env.start_gateway("dashboard", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    try:
        wait_tcp(admin, gw.proc, 10, "admin listener")
        with env.connect(gw) as c:   # one request, so labelled families have samples
            eq(c.request("GET", "/api/x").status, 200, "a proxied request")
        status, ctype, text = _scrape(admin)
        eq(status, 200, "GET /metrics")
        eq(ctype, "text/plain; version=0.0.4; charset=utf-8", "the exposition's content type")
        exported = _exported(text)
        queried = set()
        for title, expr in _queries(dash):
            for name in NAME.findall(expr):
                queried.add(name)
                check(name in exported, "panel %r queries %s, which /metrics does not export"
                      % (title, name))
            used = set()
            for name, matchers in SELECTOR.findall(expr):
                used |= {(name, l) for l in MATCHER.findall(matchers)}
            names = NAME.findall(expr)
            for by in BY.findall(expr):
                used |= {(n, l.strip()) for l in by.split(",") if l.strip() for n in names}
            for name, label in used:
                if label in SCRAPE_LABELS or name not in exported:
                    continue
                fam, labels = exported[name]
                if fam.samples:
                    check(label in labels, "panel %r uses label %r of %s, which has labels %s"
                          % (title, label, name, sorted(labels)))
        check(len(queried) >= 30, "the dashboard covers the exported families (%d queried)"
              % len(queried))
    finally:
        gw.stop()
