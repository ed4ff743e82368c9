"""Request, upstream and policy metrics (issue 13, part C2): a scripted mix
of traffic, then the exact counter deltas from GET /metrics on the admin
listener, parsed with the reference Prometheus text parser
(python3-prometheus-client)."""

import http.client
import os

from prometheus_client.parser import text_string_to_metric_families

from harness import check, eq, fail, free_port, test, wait_tcp

TOKEN = "metrics-admin-token-0123456789"


class Scrape:
    """One parsed exposition: value(sample, **labels) and the set of every
    label value seen."""

    def __init__(self, text):
        self.samples = {}
        self.label_values = set()
        self.families = set()
        for fam in text_string_to_metric_families(text):
            self.families.add(fam.name)
            for s in fam.samples:
                key = (s.name, frozenset(s.labels.items()))
                if key in self.samples:
                    fail("sample %s%r exported twice" % (s.name, s.labels))
                self.samples[key] = s.value
                self.label_values.update(v for k, v in s.labels.items() if k != "le")

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name, **labels):
        """The sum over every series of name whose labels include labels."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        body = r.read().decode()
        eq(r.status, 200, "GET /metrics status")
        check(r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"),
              "Content-Type %r" % r.getheader("Content-Type"))
        return Scrape(body)
    finally:
        c.close()


class Delta:
    """Deltas between two scrapes; check() collects every mismatch."""

    def __init__(self, before, after):
        self.b, self.a = before, after
        self.bad = []

    def of(self, name, **labels):
        return self.a.value(name, **labels) - self.b.value(name, **labels)

    def total(self, name, **labels):
        return self.a.total(name, **labels) - self.b.total(name, **labels)

    def expect(self, want, name, **labels):
        got = self.of(name, **labels)
        if got != want:
            self.bad.append("%s%r: expected +%g, got +%g" % (name, labels, want, got))

    def expect_total(self, want, name, **labels):
        got = self.total(name, **labels)
        if got != want:
            self.bad.append("sum of %s%r: expected +%g, got +%g" % (name, labels, want, got))

    def done(self):
        if self.bad:
            fail("; ".join(self.bad))


def _gateway(env, name, workers=1, extra_routes=(), extra=None):
    """A gateway with named routes (no catch-all, so /nowhere is 404), an
    unreachable upstream and one that gives up after 1s, and the admin
    listener. Its admin port is gw.admin_port."""
    dead = "127.0.0.1:%d" % free_port()
    up = "127.0.0.1:%d" % env.upstream_port
    cfg = env.config(extra or {})
    cfg["workers"] = workers
    cfg["upstreams"] = cfg["upstreams"] + [
        {"name": "dead", "servers": [dead], "connect_timeout": "1s", "response_timeout": "5s",
         "fail_timeout": "1s", "keepalive": 2, "keepalive_timeout": "10s"},
        {"name": "impatient", "servers": [up], "connect_timeout": "1s",
         "response_timeout": "1s", "fail_timeout": "1s", "keepalive": 2,
         "keepalive_timeout": "10s"},
    ]
    cfg["routes"] = [
        {"name": "certs", "path": "/certificates/", "upstream": "echo",
         "allow_classes": ["bootstrap", "device"], "require_bearer": False},
        {"name": "api", "path": "/api/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": True},
        {"name": "other", "path": "/other/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False},
        {"name": "down", "path": "/down/", "upstream": "dead", "allow_classes": ["device"],
         "require_bearer": False},
        {"name": "slow", "path": "/slow/", "upstream": "impatient", "allow_classes": ["device"],
         "require_bearer": False},
    ] + list(extra_routes)
    admin_port = free_port()
    cfg["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    wait_tcp(admin_port, gw.proc, 10, "admin listener")
    gw.admin_port = admin_port
    return gw


def _no_identifying_labels(env, s, paths):
    """No label value anywhere is a device id, serial, fingerprint, client
    address or a request path the test sent."""
    bad = set(paths)
    for cert, cls in (("device", "device"), ("bootstrap", "bootstrap")):
        ident = env.identity(cert, cls)
        bad.update(v for v in ident.values() if v and v not in ("device", "bootstrap"))
    for v in s.label_values:
        check(v not in bad, "label value %r identifies a client or a request" % v)
        check("127.0.0.1" not in v, "label value %r carries an address" % v)


@test("metrics: requests by route/class/status and upstream connections, failures and times, exact deltas")
def _(env):
    gw = _gateway(env, "mx-traffic")
    try:
        before = scrape(gw.admin_port)
        up_before = env.upstream_count()
        paths = []

        def get(conn, path, **kw):
            paths.append(path.split("?")[0])
            return conn.request("GET", path, **kw)

        with env.connect(gw) as c:       # one connection: the upstream pool is reused
            for i in range(3):
                eq(get(c, "/api/good%d" % i).status, 200, "api request %d" % i)
            eq(get(c, "/other/x").status, 200, "other route")
            eq(get(c, "/api/slow?ms=300").status, 200, "slow upstream answer within its timeout")
        with env.connect(gw) as c:
            eq(get(c, "/nowhere/at/all").status, 404, "no route")
        with env.connect(gw, "bootstrap") as c:
            eq(get(c, "/api/forbidden").status, 403, "class not allowed")
        with env.connect(gw) as c:
            eq(get(c, "/down/x").status, 502, "upstream refuses connections")
        with env.connect(gw) as c:
            eq(get(c, "/slow/slow?ms=2500").status, 504, "upstream response timeout")
        eq(env.upstream_count() - up_before, 6, "requests that reached the echo upstream")

        after = scrape(gw.admin_port)
        d = Delta(before, after)
        R = "portcullis_http_requests_total"
        d.expect(4, R, route="api", **{"class": "device", "status": "2xx"})
        d.expect(1, R, route="other", **{"class": "device", "status": "2xx"})
        d.expect(1, R, route="_none", **{"class": "device", "status": "4xx"})
        d.expect(1, R, route="api", **{"class": "bootstrap", "status": "4xx"})
        d.expect(1, R, route="down", **{"class": "device", "status": "5xx"})
        d.expect(1, R, route="slow", **{"class": "device", "status": "5xx"})
        d.expect_total(9, R)
        # the duration histogram counts every answered request, by route
        for route, n in (("api", 5), ("other", 1), ("_none", 1), ("down", 1), ("slow", 1)):
            d.expect(n, "portcullis_http_request_duration_seconds_count", route=route)
        d.expect_total(9, "portcullis_http_request_duration_seconds_count")
        # the 300 ms request (the 2.5 s one was cut at 1 s)
        H = "portcullis_http_request_duration_seconds_bucket"
        d.expect(4, H, route="api", le="0.25")
        d.expect(5, H, route="api", le="0.5")
        d.expect(0, H, route="slow", le="0.5")
        d.expect(1, H, route="slow", le="2.5")

        C = "portcullis_upstream_connections_total"
        d.expect(1, C, upstream="echo", kind="new")
        d.expect(4, C, upstream="echo", kind="reused")
        d.expect(1, C, upstream="impatient", kind="new")
        d.expect(0, C, upstream="impatient", kind="reused")
        d.expect_total(0, C, upstream="dead")
        F = "portcullis_upstream_failures_total"
        d.expect(1, F, upstream="dead", code="connect_refused")
        d.expect(1, F, upstream="impatient", code="response_timeout")
        d.expect_total(2, F)
        T = "portcullis_upstream_response_duration_seconds"
        d.expect(5, T + "_count", upstream="echo")
        d.expect(4, T + "_bucket", upstream="echo", le="0.25")
        d.expect(5, T + "_bucket", upstream="echo", le="0.5")
        d.expect(0, T + "_count", upstream="impatient")
        d.expect(0, T + "_count", upstream="dead")
        d.done()
        s_sum = d.of(T + "_sum", upstream="echo")
        check(0.3 <= s_sum < 1.0, "upstream time sum %.3f s for four quick answers and a 300 ms one" % s_sum)
        _no_identifying_labels(env, after, paths)
    finally:
        gw.stop()


@test("metrics: request counters from every worker are summed at scrape time")
def _(env):
    gw = _gateway(env, "mx-workers", workers=2)
    try:
        before = scrape(gw.admin_port)
        n = 12
        for i in range(n):   # a connection each: the kernel spreads them over the workers
            with env.connect(gw) as c:
                eq(c.request("GET", "/other/w%d" % i).status, 200, "request %d" % i)
        d = Delta(before, scrape(gw.admin_port))
        d.expect(n, "portcullis_http_requests_total", route="other",
                 **{"class": "device", "status": "2xx"})
        d.expect(n, "portcullis_http_request_duration_seconds_count", route="other")
        d.expect_total(n, "portcullis_upstream_connections_total", upstream="echo")
        d.expect(n, "portcullis_upstream_response_duration_seconds_count", upstream="echo")
        d.done()
    finally:
        gw.stop()
