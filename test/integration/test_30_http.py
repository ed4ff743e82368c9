"""HTTP/1.1 handling: malformed requests, limits, bodies, keep-alive, upstream errors."""

import hashlib
import os
import socket
import time

from harness import (REFUSAL_ERRORS, build_request, check, check_json_error,
                     eq, sha256, short, test, upstream_headers, upstream_info)

MB = 1024 * 1024


def _raw(env, raw, scenario="main", cert="device", timeout=5.0):
    """Send raw bytes on a fresh connection; return (response, conn-closed-after)."""
    gw = env.gateway(scenario)
    with env.connect(gw, cert, timeout=timeout) as c:
        c.send(raw)
        resp = c.read_response()
        return resp, c.is_closed(2.0)


def _bad(env, raw, what, status=400):
    before = env.upstream_count()
    resp, closed = _raw(env, raw)
    check(resp.status == status, "%s: expected %d, got %d %s: %s"
          % (what, status, resp.status, resp.reason, short(resp.body)))
    eq(env.upstream_count(), before, "upstream request count")
    return resp, closed


def _auth(env):
    return "Authorization: Bearer %s\r\n" % env.bearer


# -- malformed requests ------------------------------------------------------

@test("garbage request line: 400 and connection closed")
def _(env):
    resp, closed = _bad(env, b"THIS IS NOT HTTP AT ALL\r\n\r\n", "garbage")
    check(closed, "connection left open after 400 for a garbage request line")


@test("Content-Length with Transfer-Encoding: chunked: 400")
def _(env):
    raw = ("POST /smuggle HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % _auth(env)).encode()
    _bad(env, raw, "CL+TE")


@test("Content-Length with Transfer-Encoding: chunked: connection closed after the 400")
def _(env):
    raw = ("POST /smuggle HTTP/1.1\r\nHost: localhost\r\n%sTransfer-Encoding: chunked\r\n"
           "Content-Length: 5\r\n\r\n0\r\n\r\n" % _auth(env)).encode()
    resp, closed = _bad(env, raw, "TE+CL")
    check(closed, "connection left open after a request with both Content-Length and "
                  "Transfer-Encoding (RFC 9112 section 6.1 requires closing)")


@test("two different Content-Length headers: 400")
def _(env):
    raw = ("POST /twocl HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 3\r\n"
           "Content-Length: 4\r\n\r\nabcd" % _auth(env)).encode()
    _bad(env, raw, "two Content-Length")


@test("Content-Length list with different values: 400")
def _(env):
    raw = ("POST /clist HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 3, 4\r\n\r\nabcd"
           % _auth(env)).encode()
    _bad(env, raw, "Content-Length: 3, 4")


@test("bad chunk size (zz): 400")
def _(env):
    raw = ("POST /badchunk HTTP/1.1\r\nHost: localhost\r\n%sTransfer-Encoding: chunked\r\n\r\n"
           "zz\r\nhello\r\n0\r\n\r\n" % _auth(env)).encode()
    _bad(env, raw, "chunk size zz")


@test("obs-fold header continuation line: 400 obs_fold")
def _(env):
    raw = ("GET /fold HTTP/1.1\r\nHost: localhost\r\n%sX-Folded: first\r\n second\r\n\r\n"
           % _auth(env)).encode()
    resp, _ = _bad(env, raw, "obs-fold")
    eq(check_json_error(resp, 400)["error"], "obs_fold", "error code")


@test("path with /../: 400")
def _(env):
    raw = ("GET /a/../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % _auth(env)).encode()
    _bad(env, raw, "dot-dot path")


@test("unsupported Transfer-Encoding (gzip): 501 unsupported_transfer_coding, closed")
def _(env):
    raw = ("POST /te HTTP/1.1\r\nHost: localhost\r\n%sTransfer-Encoding: gzip\r\n\r\n"
           % _auth(env)).encode()
    resp, closed = _bad(env, raw, "Transfer-Encoding: gzip", status=501)
    eq(check_json_error(resp, 501)["error"], "unsupported_transfer_coding", "error code")
    check(closed, "connection left open after the 501")


# -- limits ------------------------------------------------------------------

@test("header bytes over max_header_bytes (4k): 431")
def _(env):
    raw = build_request("GET", "/big", [("X-Big", "a" * 5000)], bearer=env.bearer)
    before = env.upstream_count()
    resp, _ = _raw(env, raw, scenario="limits")
    eq(resp.status, 431, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("more headers than max_headers (20): 431")
def _(env):
    raw = build_request("GET", "/many", [("X-H-%d" % i, "v") for i in range(30)],
                        bearer=env.bearer)
    before = env.upstream_count()
    resp, _ = _raw(env, raw, scenario="limits")
    eq(resp.status, 431, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("headers just under the limits: 200")
def _(env):
    raw = build_request("GET", "/fits", [("X-H-%d" % i, "v" * 50) for i in range(10)],
                        bearer=env.bearer)
    resp, _ = _raw(env, raw, scenario="limits")
    upstream_info(resp)


@test("Content-Length over max_body_bytes (1m): 413")
def _(env):
    gw = env.gateway("limits")
    before = env.upstream_count()
    with env.connect(gw) as c:
        # Headers only: the declared length alone must be enough to refuse.
        c.send(build_request("POST", "/upload", [("Content-Length", str(2 * MB))],
                             bearer=env.bearer))
        resp = c.read_response()
    eq(resp.status, 413, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("chunked body over max_body_bytes (1m): the whole body written, then 413, then closed")
def _(env):
    gw = env.gateway("limits")
    with env.connect(gw) as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")],
                             bearer=env.bearer))
        piece = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"
        try:
            for _ in range(24):  # 1.5 MB
                c.send(piece)
            c.send(b"0\r\n\r\n")
        except REFUSAL_ERRORS as e:
            raise AssertionError("writing the body failed (%r); the gateway should linger "
                                 "before closing" % e)
        resp = c.read_response(timeout=10)
        eq(check_json_error(resp, 413)["error"], "payload_too_large", "error code")
        eq(resp.header("Connection"), "close", "Connection header")
        check(c.is_closed(5.0), "connection left open after the 413")


@test("body within max_body_bytes: forwarded intact")
def _(env):
    body = os.urandom(512 * 1024)
    resp, _ = _raw(env, build_request("POST", "/within", body=body, bearer=env.bearer),
                   scenario="limits")
    info = upstream_info(resp)
    eq(info["body_length"], len(body), "body_length")
    eq(info["body_sha256"], sha256(body), "body_sha256")


@test("header read timeout (1s): 408 request_timeout, then closed")
def _(env):
    gw = env.gateway("limits")
    with env.connect(gw, timeout=6) as c:
        t0 = time.monotonic()
        c.send(b"GET /partial HT")
        try:
            resp = c.read_response(timeout=6)
        except socket.timeout:
            raise AssertionError("no response 6s after a partial request line")
        elapsed = time.monotonic() - t0
        eq(check_json_error(resp, 408)["error"], "request_timeout", "error code")
        eq(resp.header("Connection"), "close", "Connection header")
        check(c.is_closed(2.0), "connection left open after the 408")
    check(0.7 <= elapsed <= 4.0, "reacted after %.2fs, expected about 1s" % elapsed)


# -- bodies ------------------------------------------------------------------

@test("Content-Length POST body forwarded intact")
def _(env):
    body = os.urandom(300000)
    resp, _ = _raw(env, build_request("POST", "/cl", body=body, bearer=env.bearer))
    info = upstream_info(resp)
    eq(info["method"], "POST", "method")
    eq(info["body_length"], len(body), "body_length")
    eq(info["body_sha256"], sha256(body), "body_sha256")


@test("10 MB chunked upload arrives intact", timeout=60)
def _(env):
    body = os.urandom(10 * MB)
    gw = env.gateway("main")
    with env.connect(gw, timeout=20) as c:
        c.send(build_request("PUT", "/upload/big", body=body, chunked=True, bearer=env.bearer,
                             chunk_size=100000))
        info = upstream_info(c.read_response())
    eq(info["body_length"], len(body), "body_length")
    eq(info["body_sha256"], sha256(body), "body_sha256")


@test("10 MB chunked download arrives intact", timeout=60)
def _(env):
    gw = env.gateway("main")
    n = 10 * MB
    with env.connect(gw, timeout=20) as c:
        resp = c.request("GET", "/download?bytes=%d" % n)
    eq(resp.status, 200, "status")
    eq(len(resp.body), n, "body length")
    want = resp.header("X-Body-Sha256")
    check(want, "X-Body-Sha256 not passed through")
    eq(hashlib.sha256(resp.body).hexdigest(), want, "body sha256")


@test("small download then more requests on the same connection")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        for n in (0, 1, 65536, 65537):
            resp = c.request("GET", "/download?bytes=%d" % n)
            eq(resp.status, 200, "status for %d bytes" % n)
            eq(len(resp.body), n, "body length")
            eq(sha256(resp.body), resp.header("X-Body-Sha256"), "sha256 for %d bytes" % n)


# -- connection handling -----------------------------------------------------

@test("keep-alive: 5 requests on one connection")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        for i in range(5):
            info = upstream_info(c.request("GET", "/ka/%d" % i), "request %d" % i)
            eq(info["path"], "/ka/%d" % i, "path of request %d" % i)


@test("pipelining: 3 requests in one write, 3 responses in order")
def _(env):
    gw = env.gateway("main")
    paths = ["/pipe/a", "/pipe/b", "/pipe/c"]
    with env.connect(gw) as c:
        c.send(b"".join(build_request("GET", p, bearer=env.bearer) for p in paths))
        for p in paths:
            info = upstream_info(c.read_response(), p)
            eq(info["path"], p, "pipelined response order")


@test("pipelining with bodies: POST, GET, POST in one write")
def _(env):
    gw = env.gateway("main")
    b1, b3 = os.urandom(1000), os.urandom(70000)
    with env.connect(gw) as c:
        c.send(build_request("POST", "/pb/1", body=b1, bearer=env.bearer)
               + build_request("GET", "/pb/2", bearer=env.bearer)
               + build_request("POST", "/pb/3", body=b3, bearer=env.bearer, chunked=True))
        for path, body in (("/pb/1", b1), ("/pb/2", b""), ("/pb/3", b3)):
            info = upstream_info(c.read_response(), path)
            eq(info["path"], path, "response order")
            eq(info["body_sha256"], sha256(body), "body of %s" % path)


@test("Connection: close from the client: response then close")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        upstream_info(c.request("GET", "/bye", headers=[("Connection", "close")]))
        check(c.is_closed(2.0), "connection still open after Connection: close")


@test("upstream closing its connection does not break the client connection")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        upstream_info(c.request("GET", "/close"), "GET /close")
        for i in range(3):
            info = upstream_info(c.request("GET", "/after-close/%d" % i), "after /close")
            eq(info["path"], "/after-close/%d" % i, "path")


@test("hop-by-hop response headers stripped, end-to-end kept")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        resp = c.request("GET", "/hop")
    eq(resp.status, 200, "status")
    eq(resp.header_all("X-Hop"), [], "X-Hop (named in upstream Connection)")
    eq(resp.header_all("Keep-Alive"), [], "Keep-Alive")
    conn = ",".join(resp.header_all("Connection")).lower()
    check("x-hop" not in conn, "Connection header leaks upstream token: %r" % conn)
    eq(resp.header_all("X-End-To-End"), ["kept"], "X-End-To-End")


@test("hop-by-hop request headers stripped before the upstream")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        resp = c.request("GET", "/hop-req", headers=[
            ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=99"), ("X-End-To-End", "yes")])
    info = upstream_info(resp)
    eq(upstream_headers(info, "X-Secret-Hop"), [], "X-Secret-Hop")
    eq(upstream_headers(info, "Keep-Alive"), [], "Keep-Alive")
    conn = ",".join(upstream_headers(info, "Connection")).lower()
    check("x-secret-hop" not in conn, "upstream saw Connection: %r" % conn)
    eq(upstream_headers(info, "X-End-To-End"), ["yes"], "X-End-To-End")


# -- upstream errors and passthrough -----------------------------------------

@test("upstream status passed through (503 from upstream)")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        resp = c.request("GET", "/x/status/503")
    eq(resp.status, 503, "status")
    check(b'"method"' in resp.body, "body is not the upstream's: %s" % short(resp.body))


@test("upstream down: 502 JSON")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        resp = c.request("GET", "/down/x")
    check_json_error(resp, 502)


@test("slow upstream beyond response_timeout (1s): 504 JSON")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw, timeout=8) as c:
        t0 = time.monotonic()
        resp = c.request("GET", "/timeout/slow?ms=3000")
        elapsed = time.monotonic() - t0
    check_json_error(resp, 504)
    check(elapsed < 2.8, "504 took %.2fs, expected about 1s" % elapsed)


@test("slow upstream within response_timeout: 200")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        upstream_info(c.request("GET", "/timeout/slow?ms=200"))


@test("gateway still serves after the error tests")
def _(env):
    gw = env.gateway("main")
    with env.connect(gw) as c:
        upstream_info(c.request("GET", "/still-alive"))

