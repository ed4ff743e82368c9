"""Behaviour driven by less common config settings, plus concurrency."""

import ssl
import threading
import time

from tlsprobe import client_ctx, verdict
from harness import (H_CLASS, H_DEVICE_ID, H_SERIAL, REFUSAL_ERRORS, check, check_json_error,
                     check_identity, eq, fail, test, upstream_headers, upstream_info)


def _private(env, name, overrides):
    return env.start_gateway(name, env.config(overrides))


@test("identity.headers: custom header names replace the defaults")
def _(env):
    gw = _private(env, "custom-headers", {"identity": {"headers": {
        "serial": "X-Cert-Serial", "device_id": "X-Thing-Id", "class": "X-Cert-Class"}}})
    try:
        with env.connect(gw) as c:
            info = upstream_info(c.request("GET", "/custom", headers=[
                ("X-Thing-Id", "evil"), ("X-Cert-Serial", "1"), ("X-Cert-Class", "bootstrap")]))
    finally:
        gw.stop()
    want = env.identity("device", "device")
    eq(upstream_headers(info, "X-Cert-Serial"), [want[H_SERIAL]], "X-Cert-Serial")
    eq(upstream_headers(info, "X-Thing-Id"), ["device-1234"], "X-Thing-Id")
    eq(upstream_headers(info, "X-Cert-Class"), ["device"], "X-Cert-Class")
    for default in (H_SERIAL, H_DEVICE_ID, H_CLASS):
        eq(upstream_headers(info, default), [], "%s (renamed away)" % default)


@test("identity.device_id.source: cn uses the subject CN")
def _(env):
    gw = _private(env, "cn-source", {"identity": {"device_id": {"source": "cn", "prefix": None}}})
    try:
        with env.connect(gw, "device2") as c:
            info = upstream_info(c.request("GET", "/cn"))
    finally:
        gw.stop()
    eq(upstream_headers(info, H_DEVICE_ID), ["device-5678"], H_DEVICE_ID)


@test("tls.min_version 1.3: TLS 1.2 client refused, TLS 1.3 accepted")
def _(env):
    gw = _private(env, "tls13-only", {"tls": {"min_version": "1.3"}})
    try:
        eq(verdict(env, gw, client_ctx(env, "device", ssl.TLSVersion.TLSv1_2)),
           "TLSV1_ALERT_PROTOCOL_VERSION", "what a TLS 1.2 client gets")
        with env.connect(gw) as c:
            eq(c.sock.version(), "TLSv1.3", "TLS version")
            upstream_info(c.request("GET", "/tls13-only"))
    finally:
        gw.stop()


@test("request without Host: 400")
def _(env):
    gw = env.gateway("main")
    before = env.upstream_count()
    with env.connect(gw) as c:
        resp = c.request("GET", "/nohost", host=None)
    eq(resp.status, 400, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("request with two Host headers: 400")
def _(env):
    gw = env.gateway("main")
    before = env.upstream_count()
    with env.connect(gw) as c:
        resp = c.request("GET", "/twohost", headers=[("Host", "evil.example")])
    eq(resp.status, 400, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("NUL byte in a header value: 400")
def _(env):
    gw = env.gateway("main")
    before = env.upstream_count()
    with env.connect(gw) as c:
        resp = c.request("GET", "/nul", headers=[("X-Nul", "a\x00b")])
    eq(resp.status, 400, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("body read timeout (2s): stalled body gets 408 request_timeout, then closed")
def _(env):
    gw = env.gateway("limits")
    with env.connect(gw, timeout=8) as c:
        c.send(b"POST /stall HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
               b"Content-Length: 100\r\n\r\n0123456789" % env.bearer.encode())
        t0 = time.monotonic()
        try:
            resp = c.read_response(timeout=8)
        except OSError as e:
            fail("no response 8s into a stalled body (%r)" % e)
        elapsed = time.monotonic() - t0
        eq(check_json_error(resp, 408)["error"], "request_timeout", "error code")
        eq(resp.header("Connection"), "close", "Connection header")
        check(c.is_closed(2.0), "connection left open after the 408")
    check(1.5 <= elapsed <= 5.0, "reacted after %.2fs, expected about 2s" % elapsed)


@test("concurrency: 16 connections x 5 requests, identities never mixed up", timeout=60)
def _(env):
    gw = env.gateway("main")
    want = {"device": env.identity("device", "device"),
            "device2": env.identity("device2", "device")}
    errors = []

    def worker(i):
        cert = "device" if i % 2 else "device2"
        try:
            with env.connect(gw, cert, timeout=10) as c:
                for j in range(5):
                    path = "/conc/%d/%d" % (i, j)
                    info = upstream_info(c.request("POST", path, body=b"x" * (i * 100 + j)))
                    eq(info["path"], path, "path")
                    eq(info["body_length"], i * 100 + j, "body length")
                    check_identity(info, want[cert])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append("connection %d (%s): %s" % (i, cert, e))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    check(not any(t.is_alive() for t in threads), "some client threads did not finish")
    check(not errors, "; ".join(errors[:3]) + (" (+%d more)" % (len(errors) - 3)
                                              if len(errors) > 3 else ""))

