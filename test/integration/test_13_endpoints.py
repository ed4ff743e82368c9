"""Metrics endpoints, gauges, connection and TLS counters (issue 13, part C1).

Every scrape is parsed with the reference Prometheus text parser
(python3-prometheus-client), and counters are compared as exact deltas
between two scrapes. Each test owns its gateway (with a metrics listener on
its own port) so nothing else moves its counters."""

import json
import os
import signal
import socket
import subprocess
import time
import http.client

from prometheus_client.parser import text_string_to_metric_families

from harness import (BINARY, H_DEVICE_ID, H_FINGERPRINT, H_SERIAL, REFUSAL_ERRORS, TIME_FACTOR,
                     build_request, check, eq, fail, free_port, test, to_yaml, wait_tcp)
from testkit import RedisServer, redis_overrides, wait_until
from tlsprobe import TLS12, TLS13, client_ctx, verdict

TOKEN = "metrics-token-0123456789abcdef"
ADMIN_TOKEN = "endpoints-admin-token-0123456789"


# ---------------------------------------------------------------- helpers

def http_get(port, path, token=None, method="GET"):
    """(status, headers dict lower-case, body bytes) of one plain HTTP request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = {"Authorization": "Bearer " + token} if token else {}
        c.request(method, path, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class Scrape:
    """One parsed exposition: samples by (name, sorted labels)."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                check(key not in self.samples, "duplicate series %r" % (key,))
                self.samples[key] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def series(self, name):
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}

    def label_values(self):
        return {v for (_, labels) in self.samples for (_, v) in labels}


def delta(after, before, name):
    """{labels: after - before} for every series of name whose value moved."""
    a, b = after.series(name), before.series(name)
    out = {}
    for k in set(a) | set(b):
        d = a.get(k, 0.0) - b.get(k, 0.0)
        if d:
            out[k] = d
    return out


def lab(**kw):
    return tuple(sorted(kw.items()))


class MGw:
    """A gateway with a metrics listener (token: metrics.token_env set), an
    admin listener if asked, and a redis-server of its own if asked."""

    def __init__(self, env, name, over=None, token=False, admin=False, own_redis=False,
                 redis_port=None, revocation=None):
        self.env, self.redis = env, None
        cfg_over = {}
        if own_redis:
            self.redis = RedisServer(env, name + "-redis").start()
            cfg_over.update(redis_overrides(self.redis.port, **(revocation or {})))
        elif redis_port:
            cfg_over.update(redis_overrides(redis_port, **(revocation or {})))
        self.mport = free_port()
        cfg_over["metrics"] = {"address": "127.0.0.1:%d" % self.mport}
        environ = {}
        if token:
            cfg_over["metrics"]["token_env"] = "PORTCULLIS_METRICS_TOKEN"
            environ["PORTCULLIS_METRICS_TOKEN"] = TOKEN
        self.token = TOKEN if token else None
        self.aport = None
        if admin:
            self.aport = free_port()
            cfg_over["admin"] = {"listen": "127.0.0.1:%d" % self.aport}
            environ["PORTCULLIS_ADMIN_TOKEN"] = ADMIN_TOKEN
        for k, v in (over or {}).items():
            if isinstance(v, dict) and isinstance(cfg_over.get(k), dict):
                cfg_over[k].update(v)
            else:
                cfg_over[k] = v
        self.config = env.config(cfg_over)
        try:
            self.gw = env.start_gateway(name, self.config, environ=environ)
            wait_tcp(self.mport, self.gw.proc, 10 * TIME_FACTOR, "metrics listener")
            self._settle()
        except BaseException:
            if self.redis:
                self.redis.stop()
            raise

    def _settle(self):
        """The start's readiness probe (one TCP connect and close, no byte)
        may reach a worker seconds later (TCP_DEFER_ACCEPT holds a silent
        connection): wait until it has been accepted and closed, so it moves
        no counter a test compares."""
        def settled():
            s = self.scrape()
            return (s.get("portcullis_connections_accepted_total") >= 1 and
                    s.get("portcullis_connections_open") == 0)
        wait_until(settled, 15 * TIME_FACTOR)

    @property
    def port(self):
        return self.gw.port

    def stop(self):
        self.gw.stop()
        if self.redis:
            self.redis.stop()

    def scrape(self):
        status, headers, body = http_get(self.mport, "/metrics", self.token)
        eq(status, 200, "GET /metrics")
        check(headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
              "Content-Type of /metrics: %r" % headers.get("content-type"))
        return Scrape(body.decode())

    def ready(self):
        status, _, body = http_get(self.mport, "/readyz")
        return status, json.loads(body)

    def wait_delta(self, before, name, expected, what, timeout=3.0):
        """The scrape once name's delta equals expected (the worker counts
        right after the client saw the outcome), else fail with the last."""
        last = {}

        def ok():
            nonlocal last
            last = delta(self.scrape(), before, name)
            return last == expected
        if not wait_until(ok, timeout * TIME_FACTOR):
            fail("%s: %s moved by %r, expected %r" % (what, name, last, expected))
        return self.scrape()


def no_private_labels(env, scrape, extra=()):
    """No label value is a device id, serial, fingerprint, client address or path."""
    forbidden = set(extra)
    for cert, cls in (("device", "device"), ("device2", "device"), ("bootstrap", "bootstrap")):
        ident = env.identity(cert, cls)
        forbidden |= {ident[H_SERIAL], ident[H_FINGERPRINT], "device-1234", "device-5678"}
        if ident.get(H_DEVICE_ID):
            forbidden.add(ident[H_DEVICE_ID])
    forbidden.add("127.0.0.1")
    values = scrape.label_values()
    bad = sorted(v for v in values if v in forbidden or v.startswith("127.0.0.1:"))
    check(not bad, "label values that must never appear: %r" % bad)


def tls_fail_reasons():
    return ["no_certificate", "unknown_ca", "expired", "not_yet_valid", "bad_eku", "revoked",
            "handshake_timeout", "protocol_error", "other", "revocation_unknown"]


# ---------------------------------------------------------------- tests

@test("metrics: every TLS handshake failure is counted once under its reason", timeout=120)
def _(env):
    g = MGw(env, "m-tlsfail", own_redis=True,
            over={"tls": {"handshake_timeout": "1s"}})
    try:
        s0 = g.scrape()
        for r in tls_fail_reasons():
            check(("portcullis_tls_handshake_failures_total", lab(reason=r)) in s0.samples,
                  "reason %s is not exported before it happens" % r)
        g.redis.write("device:" + env.identity("device2", "device")[H_SERIAL])
        time.sleep(0.5 * TIME_FACTOR)
        up0 = env.upstream_count()
        cases = [
            ("no_certificate", None, TLS13, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
            ("no_certificate", None, TLS12, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
            ("unknown_ca", "wrongca", TLS13, "TLSV1_ALERT_UNKNOWN_CA"),
            ("unknown_ca", "wrongca", TLS12, "TLSV1_ALERT_UNKNOWN_CA"),
            ("expired", "expired", TLS13, "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
            ("not_yet_valid", "notyet", TLS13, "SSLV3_ALERT_BAD_CERTIFICATE"),
            ("bad_eku", "noclientauth", TLS13, "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE"),
            ("revoked", "device2", TLS13, "SSLV3_ALERT_CERTIFICATE_REVOKED"),
            ("revoked", "device2", TLS12, "SSLV3_ALERT_CERTIFICATE_REVOKED"),
        ]
        for reason, cert, version, alert in cases:
            before = g.scrape()
            got = verdict(env, g.gw, client_ctx(env, cert, version))
            eq(got, alert, "%s (%s): what the client got" % (reason, version))
            g.wait_delta(before, "portcullis_tls_handshake_failures_total",
                         {lab(reason=reason): 1.0}, "%s (%s)" % (reason, version))
        # handshake timeout: a client that starts a record and stops (one byte,
        # so TCP_DEFER_ACCEPT hands the connection over at once)
        before = g.scrape()
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            s.sendall(b"\x16")
            s.settimeout(5 * TIME_FACTOR)
            eq(s.recv(16), b"", "a silent client is closed after tls.handshake_timeout")
        g.wait_delta(before, "portcullis_tls_handshake_failures_total",
                     {lab(reason="handshake_timeout"): 1.0}, "handshake timeout")
        # protocol garbage: plain HTTP to the TLS port
        before = g.scrape()
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        g.wait_delta(before, "portcullis_tls_handshake_failures_total",
                     {lab(reason="protocol_error"): 1.0}, "plain HTTP to the TLS port")
        eq(env.upstream_count(), up0, "requests that reached the upstream")
        after = g.scrape()
        eq(delta(after, s0, "portcullis_tls_handshakes_total"), {}, "completed handshakes")
        eq(after.get("portcullis_connections_accepted_total")
           - s0.get("portcullis_connections_accepted_total"), float(len(cases) + 2),
           "connections accepted")
        no_private_labels(env, after)
    finally:
        g.stop()


@test("metrics: handshakes by class, version and result (full, cached_chain, resumed)", timeout=60)
def _(env):
    g = MGw(env, "m-handshakes")
    try:
        s0 = g.scrape()

        def get(ctx, session=None, path="/hs"):
            with env.connect(g.gw, ctx=ctx, session=session) as c:
                eq(c.request("GET", path).status, 200, "GET %s" % path)
                return c.session, c.session_reused
        ctx12 = env.client_context("device", max_version=TLS12, min_version=TLS12)
        sess, _ = get(ctx12)                                       # full
        get(env.client_context("device", max_version=TLS12, min_version=TLS12))  # cached_chain
        _, reused = get(ctx12, sess)                                # resumed
        check(reused, "the TLS 1.2 session was not resumed")
        ctx13 = env.client_context("device", max_version=TLS13, min_version=TLS13)
        sess13, _ = get(ctx13)                                      # cached_chain
        _, reused = get(ctx13, sess13)                              # resumed
        check(reused, "the TLS 1.3 session was not resumed")
        with env.connect(g.gw, cert="bootstrap", max_version=TLS13, min_version=TLS13) as c:
            eq(c.request("GET", "/certificates/x", bearer=None).status, 200, "bootstrap request")
        expected = {
            lab(**{"class": "device", "version": "TLSv1.2", "result": "full"}): 1.0,
            lab(**{"class": "device", "version": "TLSv1.2", "result": "cached_chain"}): 1.0,
            lab(**{"class": "device", "version": "TLSv1.2", "result": "resumed"}): 1.0,
            lab(**{"class": "device", "version": "TLSv1.3", "result": "cached_chain"}): 1.0,
            lab(**{"class": "device", "version": "TLSv1.3", "result": "resumed"}): 1.0,
            lab(**{"class": "bootstrap", "version": "TLSv1.3", "result": "full"}): 1.0,
        }
        s1 = g.wait_delta(s0, "portcullis_tls_handshakes_total", expected, "handshakes")
        eq(s1.get("portcullis_tls_handshake_duration_seconds_count")
           - s0.get("portcullis_tls_handshake_duration_seconds_count"), 6.0,
           "handshake duration observations")
        eq(delta(s1, s0, "portcullis_tls_verify_cache_lookups_total"),
           {lab(result="miss"): 2.0, lab(result="hit"): 2.0}, "verify cache lookups")
        eq(delta(s1, s0, "portcullis_tls_session_cache_lookups_total"),
           {lab(result="hit"): 2.0}, "session store lookups")
        eq(delta(s1, s0, "portcullis_tls_handshake_failures_total"), {}, "handshake failures")
        eq(s1.get("portcullis_connections_accepted_total")
           - s0.get("portcullis_connections_accepted_total"), 6.0, "connections accepted")
        eq(s1.get("portcullis_tls_verify_cache_entries"), 2.0, "verify cache entries")
        check(s1.get("portcullis_tls_session_cache_entries") >= 2.0,
              "session store entries: %r" % s1.get("portcullis_tls_session_cache_entries"))
        eq(s1.types.get("portcullis_tls_handshake_duration_seconds"), "histogram", "type")
        # a connection stays open: the gauge sees it
        with env.connect(g.gw) as c:
            eq(c.request("GET", "/open").status, 200, "request on the open connection")
            eq(g.scrape().get("portcullis_connections_open"), 1.0, "connections open")
        check(wait_until(lambda: g.scrape().get("portcullis_connections_open") == 0.0,
                         3 * TIME_FACTOR), "connections_open did not go back to 0")
        no_private_labels(env, g.scrape(), extra=("/hs", "/open", "/certificates/x"))
    finally:
        g.stop()


@test("metrics: connections refused by max_connections, per-IP rate and concurrency", timeout=60)
def _(env):
    g = MGw(env, "m-refused", over={"limits": {"max_connections": 2},
                                    "connection_limits": {"per_ip_concurrent": 3}})
    try:
        s0 = g.scrape()
        a, b = env.connect(g.gw), env.connect(g.gw)
        try:
            eq(a.request("GET", "/a").status, 200, "first connection")
            eq(b.request("GET", "/b").status, 200, "second connection")
            resp, why = env.attempt(g.gw, "device")
            check(resp is None, "a third connection over max_connections was served")
            g.wait_delta(s0, "portcullis_connections_refused_total",
                         {lab(reason="max_connections"): 1.0}, "max_connections")
        finally:
            a.close()
            b.close()
    finally:
        g.stop()
    g = MGw(env, "m-refused-ip", over={"connection_limits": {"per_ip_concurrent": 1,
                                                             "per_ip_rate": "2/m",
                                                             "per_ip_burst": 2}})
    try:
        s0 = g.scrape()
        with env.connect(g.gw) as a:
            eq(a.request("GET", "/a").status, 200, "first connection")
            resp, _ = env.attempt(g.gw, "device")   # second at once: concurrency
            check(resp is None, "a second concurrent connection was served")
            s1 = g.wait_delta(s0, "portcullis_connections_refused_total",
                              {lab(reason="per_ip_concurrency"): 1.0}, "per_ip_concurrent")
        check(wait_until(lambda: g.scrape().get("portcullis_connections_open") == 0.0,
                         3 * TIME_FACTOR), "the first connection did not close")
        resp, _ = env.attempt(g.gw, "device")   # burst of 2 used up: rate
        check(resp is None, "a connection over per_ip_rate was served")
        g.wait_delta(s1, "portcullis_connections_refused_total",
                     {lab(reason="per_ip_rate"): 1.0}, "per_ip_rate")
    finally:
        g.stop()


@test("metrics: reloads ok and failed, and the configuration generation")
def _(env):
    g = MGw(env, "m-reload")
    try:
        s0 = g.scrape()
        eq(s0.get("portcullis_config_generation"), 1.0, "generation at the start")
        os.kill(g.gw.pid, signal.SIGHUP)
        s1 = g.wait_delta(s0, "portcullis_reloads_total", {lab(result="ok"): 1.0}, "good reload")
        eq(s1.get("portcullis_config_generation"), 2.0, "generation after a reload")
        good = open(g.gw.config_path).read()
        with open(g.gw.config_path, "w") as f:
            f.write(good + "\nnot_a_key: 1\n")
        os.kill(g.gw.pid, signal.SIGHUP)
        s2 = g.wait_delta(s1, "portcullis_reloads_total", {lab(result="failed"): 1.0},
                          "refused reload")
        eq(s2.get("portcullis_config_generation"), 2.0, "generation after a refused reload")
        with open(g.gw.config_path, "w") as f:   # a restart-only key: refused
            cfg = dict(g.config)
            cfg["metrics"] = {"address": "127.0.0.1:%d" % free_port()}
            f.write(to_yaml(cfg))
        os.kill(g.gw.pid, signal.SIGHUP)
        g.wait_delta(s2, "portcullis_reloads_total", {lab(result="failed"): 1.0},
                     "reload changing metrics.address")
        check(wait_until(lambda: any("metrics.address: changed from" in ln
                                     for ln in g.gw.log_tail(30)), 2 * TIME_FACTOR),
              "the refusal does not name metrics.address")
    finally:
        g.stop()


@test("metrics listener: token_env set needs the token on /metrics, never on /healthz /readyz")
def _(env):
    g = MGw(env, "m-token", token=True, admin=True)
    try:
        status, headers, body = http_get(g.mport, "/metrics")
        eq(status, 401, "/metrics without a token")
        eq(json.loads(body)["error"], "unauthorized", "error code")
        check("bearer" in headers.get("www-authenticate", "").lower(), "WWW-Authenticate")
        eq(http_get(g.mport, "/metrics", "wrong-token")[0], 401, "/metrics with a wrong token")
        status, headers, body = http_get(g.mport, "/metrics", TOKEN)
        eq(status, 200, "/metrics with the token")
        Scrape(body.decode())
        for port, what in ((g.mport, "metrics listener"), (g.aport, "admin listener")):
            status, _, body = http_get(port, "/healthz")
            eq((status, json.loads(body)), (200, {"status": "ok"}), "/healthz on the " + what)
            status, _, body = http_get(port, "/readyz")
            eq((status, json.loads(body)), (200, {"status": "ready"}), "/readyz on the " + what)
        eq(http_get(g.mport, "/admin/health", TOKEN)[0], 404, "other paths on the metrics listener")
        eq(http_get(g.mport, "/readyz", method="POST")[0], 405, "POST /readyz")
        eq(http_get(g.aport, "/metrics")[0], 401, "admin /metrics still needs the admin token")
        eq(http_get(g.aport, "/metrics", ADMIN_TOKEN)[0], 200, "admin /metrics with its token")
    finally:
        g.stop()


@test("metrics listener: without token_env /metrics is open; an unset token variable fails the start")
def _(env):
    g = MGw(env, "m-notoken")
    try:
        eq(http_get(g.mport, "/metrics")[0], 200, "/metrics without token_env")
    finally:
        g.stop()
    cfg = env.config({"metrics": {"address": "127.0.0.1:%d" % free_port(),
                                  "token_env": "PORTCULLIS_TEST_UNSET_METRICS_TOKEN"}})
    path = os.path.join(env.tmp, "m-unset.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    envv = dict(os.environ)
    envv.pop("PORTCULLIS_TEST_UNSET_METRICS_TOKEN", None)
    r = subprocess.run([BINARY, "--check", "-c", path], capture_output=True, text=True,
                       timeout=30, env=envv)
    eq(r.returncode, 2, "--check with the token variable unset")
    check("metrics.token_env: the environment variable PORTCULLIS_TEST_UNSET_METRICS_TOKEN "
          "is unset or empty" in r.stderr, "--check message: %r" % r.stderr)


@test("readyz: 503 revocation_stale once Redis is gone (fail_closed, and serve_stale past max_staleness)",
      timeout=60)
def _(env):
    g = MGw(env, "m-ready-fc", own_redis=True)
    try:
        eq(g.ready(), (200, {"status": "ready"}), "ready with Redis up")
        eq(g.scrape().get("portcullis_revocation_sync_state", state="current"), 1.0, "sync state")
        g.redis.stop()
        check(wait_until(lambda: g.ready()[0] == 503, 5 * TIME_FACTOR), "still ready without Redis")
        eq(g.ready(), (503, {"status": "not_ready", "reasons": ["revocation_stale"]}),
           "fail_closed without Redis")
        s = g.scrape()
        eq({k: v for k, v in s.series("portcullis_revocation_sync_state").items()},
           {lab(state="loading"): 0.0, lab(state="current"): 0.0, lab(state="stale"): 0.0,
            lab(state="unavailable"): 1.0}, "sync state without Redis (fail_closed)")
        check(s.get("portcullis_revocation_staleness_seconds") > 0, "staleness is 0 while stale")
        eq(http_get(g.mport, "/healthz")[0], 200, "/healthz stays 200")
    finally:
        g.stop()
    g = MGw(env, "m-ready-ss", own_redis=True,
            revocation={"on_redis_unavailable": "serve_stale", "max_staleness": "3s"})
    try:
        g.redis.write("device:abc123")
        check(wait_until(lambda: g.scrape().get("portcullis_revocation_entries") == 1.0,
                         3 * TIME_FACTOR), "the mirror did not load the entry")
        g.redis.stop()
        check(wait_until(lambda: g.scrape().get("portcullis_revocation_sync_state",
                                                state="stale") == 1.0, 3 * TIME_FACTOR),
              "the sync state did not go stale")
        eq(g.ready(), (200, {"status": "ready"}), "serve_stale within max_staleness")
        check(wait_until(lambda: g.ready()[0] == 503, 6 * TIME_FACTOR),
              "still ready past max_staleness")
        eq(g.ready(), (503, {"status": "not_ready", "reasons": ["revocation_stale"]}),
           "serve_stale past max_staleness")
        s = g.scrape()
        check(s.get("portcullis_revocation_staleness_seconds") >= 3.0,
              "staleness past max_staleness: %r" % s.get("portcullis_revocation_staleness_seconds"))
        eq(s.get("portcullis_revocation_entries"), 1.0, "entries kept")
    finally:
        g.stop()


@test("readyz: 503 revocation_not_loaded when Redis was never reachable", timeout=60)
def _(env):
    g = MGw(env, "m-ready-nl", redis_port=free_port())
    try:
        check(wait_until(lambda: "starting" not in g.ready()[1].get("reasons", []),
                         10 * TIME_FACTOR), "still starting")
        eq(g.ready(), (503, {"status": "not_ready", "reasons": ["revocation_not_loaded"]}),
           "never loaded")
        eq(g.scrape().get("portcullis_revocation_sync_state", state="loading"), 1.0, "sync state")
        check(g.scrape().get("portcullis_revocation_staleness_seconds") > 0,
              "staleness of a mirror never loaded")
    finally:
        g.stop()


@test("readyz: 503 draining from SIGTERM on, while a request is still running", timeout=60)
def _(env):
    g = MGw(env, "m-ready-drain", over={"timeouts": {"drain": "10s"}})
    try:
        eq(g.ready(), (200, {"status": "ready"}), "ready before SIGTERM")
        c = env.connect(g.gw)
        try:
            eq(c.request("GET", "/first").status, 200, "first request")
            c.send(b"GET /half HTTP/1.1\r\nHost: localhost\r\n")   # a request in progress
            time.sleep(0.2)
            os.kill(g.gw.pid, signal.SIGTERM)
            check(wait_until(lambda: g.ready()[0] == 503, 3 * TIME_FACTOR), "still ready")
            eq(g.ready(), (503, {"status": "not_ready", "reasons": ["draining"]}), "draining")
            eq(http_get(g.mport, "/healthz")[0], 200, "/healthz while draining")
        finally:
            c.close()
    finally:
        g.stop()


@test("metrics: live connections closed by revocation, servers skipped, process and build gauges",
      timeout=60)
def _(env):
    dead = "127.0.0.1:%d" % free_port()
    g = MGw(env, "m-gauges", own_redis=True, over={
        "upstreams": env.base_config()["upstreams"] + [
            {"name": "dead", "servers": [dead], "connect_timeout": "1s",
             "response_timeout": "5s", "fail_timeout": "30s", "keepalive": 2,
             "keepalive_timeout": "10s"}],
        "routes": [{"path": "/down/", "upstream": "dead", "allow_classes": ["device"],
                    "require_bearer": True}] + env.base_config()["routes"]})
    try:
        s0 = g.scrape()
        eq(s0.series("portcullis_upstream_servers_skipped"),
           {lab(upstream="echo"): 0.0, lab(upstream="dead"): 0.0}, "servers skipped at the start")
        with env.connect(g.gw) as c:
            eq(c.request("GET", "/down/x").status, 502, "request to the dead upstream")
        eq(g.scrape().get("portcullis_upstream_servers_skipped", upstream="dead"), 1.0,
           "the dead server is skipped")
        c = env.connect(g.gw, cert="device2")
        try:
            eq(c.request("GET", "/live").status, 200, "request before the revocation")
            g.redis.write("device:" + env.identity("device2", "device")[H_SERIAL])
            check(c.is_closed(5 * TIME_FACTOR), "the revoked connection stayed open")
        finally:
            c.close()
        s1 = g.wait_delta(s0, "portcullis_revocation_closed_connections_total", {(): 1.0},
                          "live connection closed by revocation")
        eq(s1.get("portcullis_revocation_entries"), 1.0, "mirror entries")
        check(s1.get("portcullis_revocation_generation") >= 1.0, "mirror generation")
        eq(s1.get("portcullis_revocation_staleness_seconds"), 0.0, "staleness while current")
        builds = s1.series("portcullis_build_info")
        eq(len(builds), 1, "one build_info series")
        labels = dict(next(iter(builds)))
        eq(labels.get("version"), "0.1.0", "build_info version")
        check(labels.get("openssl", "").startswith("3."), "build_info openssl: %r" % labels)
        rss = s1.get("process_resident_memory_bytes")
        check(1e6 < rss < 4e9, "process_resident_memory_bytes: %r" % rss)
        fds, maxfds = s1.get("process_open_fds"), s1.get("process_max_fds")
        check(5 <= fds <= maxfds, "process_open_fds %r, process_max_fds %r" % (fds, maxfds))
        start = s1.get("process_start_time_seconds")
        check(time.time() - 300 < start <= time.time(), "process_start_time_seconds: %r" % start)
        for name in ("portcullis_connections_open", "portcullis_revocation_entries",
                     "portcullis_config_generation", "process_open_fds"):
            eq(s1.types.get(name), "gauge", name + " type")
        no_private_labels(env, s1, extra=("/down/x", "/live", dead))
    finally:
        g.stop()
