"""HTTP/1.1 framing and connection behaviour (issue 11): bodies on GET/HEAD,
transfer codings, obs-text, line endings, empty values, lingering close,
Expect: 100-continue refusals, the end of the drain time, JSON log fields."""

import json
import os
import signal
import socket
import subprocess
import time

from harness import (BINARY, REFUSAL_ERRORS, build_request, check, check_json_error, eq,
                     fail, sha256, short, test, to_yaml, upstream_headers, upstream_info)

MB = 1024 * 1024


def _auth(env):
    return "Authorization: Bearer %s\r\n" % env.bearer


def _raw(env, raw, scenario="main", method="GET", timeout=5.0):
    """Send raw bytes on a fresh connection; return (response, closed-after)."""
    gw = env.gateway(scenario)
    with env.connect(gw, timeout=timeout) as c:
        c.send(raw)
        resp = c.read_response(method)
        return resp, c.is_closed(2.0)


def _refused(env, raw, status, code, what, method="GET", closed=True):
    """raw gets exactly `status` with JSON error `code`, nothing reaches the
    upstream, and the connection closes after the answer."""
    before = env.upstream_count()
    resp, is_closed = _raw(env, raw, method=method)
    check(resp.status == status, "%s: expected %d %s, got %d %s: %s"
          % (what, status, code, resp.status, resp.reason, short(resp.body)))
    if method != "HEAD":
        eq(check_json_error(resp, status, what)["error"], code, what + ": error code")
    eq(resp.header("Connection"), "close" if closed else None, what + ": Connection header")
    eq(is_closed, closed, what + ": connection closed after the answer")
    eq(env.upstream_count(), before, what + ": upstream request count")
    return resp


def _head(env, method, path, lines, http="HTTP/1.1"):
    return ("%s %s %s\r\nHost: localhost\r\n%s%s\r\n"
            % (method, path, http, _auth(env), "".join(l + "\r\n" for l in lines))).encode()


# -- bodies on GET and HEAD ------------------------------------------------------

@test("GET and HEAD with a body (Content-Length or chunked): 400 body_not_allowed, closed")
def _(env):
    for method in ("GET", "HEAD"):
        _refused(env, _head(env, method, "/gb", ["Content-Length: 5"]) + b"hello",
                 400, "body_not_allowed", "%s with Content-Length: 5" % method, method=method)
        _refused(env, _head(env, method, "/gb", ["Transfer-Encoding: chunked"]) + b"5\r\nhello\r\n0\r\n\r\n",
                 400, "body_not_allowed", "%s chunked" % method, method=method)
        _refused(env, _head(env, method, "/gb", ["Transfer-Encoding: chunked"]) + b"0\r\n\r\n",
                 400, "body_not_allowed", "%s chunked, empty" % method, method=method)


@test("GET with Content-Length: 0 and HEAD without a body: forwarded")
def _(env):
    resp, closed = _raw(env, _head(env, "GET", "/g0", ["Content-Length: 0"]))
    info = upstream_info(resp)
    eq(info["method"], "GET", "method")
    eq(info["body_length"], 0, "body_length")
    eq(closed, False, "connection kept open")
    resp, _ = _raw(env, _head(env, "HEAD", "/h0", []), method="HEAD")
    eq(resp.status, 200, "HEAD status")


@test("DELETE and OPTIONS with a body: forwarded intact (the stated rule)")
def _(env):
    for method in ("DELETE", "OPTIONS"):
        body = os.urandom(1000)
        resp, _ = _raw(env, build_request(method, "/with-body", body=body, bearer=env.bearer))
        info = upstream_info(resp, method)
        eq(info["method"], method, "method")
        eq(info["body_sha256"], sha256(body), "%s body" % method)
        resp, _ = _raw(env, build_request(method, "/with-body", body=body, chunked=True,
                                          bearer=env.bearer))
        eq(upstream_info(resp, method)["body_sha256"], sha256(body), "%s chunked body" % method)


# -- transfer codings ---------------------------------------------------------------

@test("Transfer-Encoding other than exactly chunked: 501 unsupported_transfer_coding")
def _(env):
    chunked_body = b"5\r\nhello\r\n0\r\n\r\n"
    cases = [
        (["Transfer-Encoding: gzip, chunked"], chunked_body),
        (["Transfer-Encoding: deflate, chunked"], chunked_body),
        (["Transfer-Encoding: identity, chunked"], chunked_body),
        (["Transfer-Encoding: gzip"], b""),
        (["Transfer-Encoding: identity"], b""),
        (["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], chunked_body),
        (["Transfer-Encoding:", "Transfer-Encoding: chunked"], chunked_body),
    ]
    for lines, body in cases:
        _refused(env, _head(env, "POST", "/te", lines) + body, 501,
                 "unsupported_transfer_coding", " + ".join(lines))


@test("Transfer-Encoding with chunked not last, or twice: 400 (RFC 9112 section 6.3)")
def _(env):
    for lines in (["Transfer-Encoding: chunked, gzip"], ["Transfer-Encoding: chunked, chunked"],
                  ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]):
        _refused(env, _head(env, "POST", "/te", lines) + b"0\r\n\r\n", 400, "bad_request",
                 " + ".join(lines))


@test("Transfer-Encoding in an HTTP/1.0 request: 400 bad_framing")
def _(env):
    raw = _head(env, "POST", "/te10", ["Transfer-Encoding: chunked"], http="HTTP/1.0")
    _refused(env, raw + b"5\r\nhello\r\n0\r\n\r\n", 400, "bad_framing", "HTTP/1.0 chunked")


@test("Transfer-Encoding: chunked in any case, with whitespace: forwarded re-framed")
def _(env):
    for spelling in ("chunked", "Chunked", "CHUNKED", "chunked "):
        raw = _head(env, "POST", "/te-ok", ["Transfer-Encoding: " + spelling])
        resp, _ = _raw(env, raw + b"5\r\nhello\r\n0\r\n\r\n")
        info = upstream_info(resp, spelling)
        eq(info["body_sha256"], sha256(b"hello"), "%r: body" % spelling)
        eq(upstream_headers(info, "Transfer-Encoding"), ["chunked"], "%r: upstream framing" % spelling)


# -- obs-text and line endings -------------------------------------------------------

@test("header values with bytes >= 0x80 (obs-text): 400 obs_text")
def _(env):
    for value in (b"caf\xc3\xa9", b"\x80", b"a\xffb", b"\xa0 nbsp"):
        raw = _head(env, "GET", "/obs", []).replace(b"\r\n\r\n", b"\r\nX-Text: " + value + b"\r\n\r\n")
        _refused(env, raw, 400, "obs_text", "X-Text: %r" % value)


@test("bare LF or CR in the request line, a header line or the end of the head: 400 bad_line_ending")
def _(env):
    good = "GET /lf HTTP/1.1\r\nHost: localhost\r\n%sX-A: 1\r\n\r\n" % _auth(env)
    cases = {
        "request line": good.replace("HTTP/1.1\r\n", "HTTP/1.1\n"),
        "header line": good.replace("X-A: 1\r\n", "X-A: 1\n"),
        "end of the head": good.replace("X-A: 1\r\n\r\n", "X-A: 1\r\n\n"),
        "only LFs": good.replace("\r\n", "\n"),
        "before the request line": "\n" + good,
        "bare CR in a line": good.replace("X-A: 1", "X-A: 1\rX-B: 2"),
        "CR CR LF": good.replace("X-A: 1\r\n", "X-A: 1\r\r\n"),
    }
    for what, raw in cases.items():
        _refused(env, raw.encode(), 400, "bad_line_ending", what)


@test("bare LF split across reads, and after a good pipelined request: 400 bad_line_ending")
def _(env):
    gw = env.gateway("main")
    before = env.upstream_count()
    with env.connect(gw) as c:
        c.send(b"GET /split HTTP/1.1\r\nHost: localhost\r\n" + _auth(env).encode() + b"X-A: 1")
        time.sleep(0.2)
        c.send(b"\n\r\n")
        resp = c.read_response()
        eq(check_json_error(resp, 400)["error"], "bad_line_ending", "split: error code")
        check(c.is_closed(2.0), "split: connection left open")
    eq(env.upstream_count(), before, "split: upstream request count")
    with env.connect(gw) as c:
        c.send(build_request("GET", "/pipe-ok", bearer=env.bearer)
               + build_request("GET", "/pipe-bad", bearer=env.bearer).replace(b"HTTP/1.1\r\n", b"HTTP/1.1\n"))
        eq(upstream_info(c.read_response())["path"], "/pipe-ok", "first pipelined request")
        eq(check_json_error(c.read_response(), 400)["error"], "bad_line_ending", "second: error code")
        check(c.is_closed(2.0), "pipelined: connection left open")
    eq(env.upstream_count(), before + 1, "pipelined: only the good request reached the upstream")
    # after a refused request whose small body is read and dropped, parsing
    # goes on in the same read: empty lines before the next request line
    # must be CRLF there too
    refused = b"POST /no-bearer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nab\r\n"
    for gap, want in ((b"\r\n", 200), (b"", 200), (b"\n", 400)):
        with env.connect(gw) as c:
            c.send(refused + gap + build_request("GET", "/after-gap", bearer=env.bearer))
            eq(check_json_error(c.read_response(), 401)["error"], "missing_token",
               "gap %r: refused request" % gap)
            resp = c.read_response()
            if want == 200:
                eq(upstream_info(resp)["path"], "/after-gap", "gap %r: next request" % gap)
            else:
                eq(check_json_error(resp, 400)["error"], "bad_line_ending", "gap %r: error code" % gap)


@test("bare LF in chunked framing and trailers: 400, nothing forwarded")
def _(env):
    head = _head(env, "POST", "/chunk-lf", ["Transfer-Encoding: chunked"])
    cases = [
        ("chunk size line", b"5\nhello\r\n0\r\n\r\n", "bad_request"),
        ("after chunk data", b"5\r\nhello\n0\r\n\r\n", "bad_request"),
        ("last chunk, no trailers", b"5\r\nhello\r\n0\r\n\n", "bad_line_ending"),
        ("after a trailer", b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n", "bad_line_ending"),
        ("end of the trailers", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\n", "bad_line_ending"),
        ("folded trailer", b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", "obs_fold"),
    ]
    for what, body, code in cases:
        _refused(env, head + body, 400, code, what)
    # well-formed trailers are accepted (and not forwarded)
    resp, _ = _raw(env, head + b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    info = upstream_info(resp, "trailers")
    eq(info["body_sha256"], sha256(b"hello"), "body with trailers")
    eq(upstream_headers(info, "X-T"), [], "trailer forwarded as a header")


# -- empty values and obs-fold ----------------------------------------------------------

@test("a header with an empty value is accepted and forwarded empty")
def _(env):
    for lines, what in ((["X-Empty:"], "X-Empty:"), (["X-Empty: "], "X-Empty: (space)"),
                        (["X-Empty:\t"], "X-Empty: (tab)"),
                        (["X-Empty:", "X-After: yes"], "empty, then another header")):
        resp, closed = _raw(env, _head(env, "GET", "/empty", lines))
        info = upstream_info(resp, what)
        eq(upstream_headers(info, "X-Empty"), [""], what + ": X-Empty upstream")
        if "X-After: yes" in lines:
            eq(upstream_headers(info, "X-After"), ["yes"], what + ": X-After upstream")
        eq(closed, False, what + ": connection kept open")
    # an empty value as the last header line
    raw = ("GET /empty-last HTTP/1.1\r\nHost: localhost\r\n%sX-Last:\r\n\r\n" % _auth(env)).encode()
    eq(upstream_headers(upstream_info(_raw(env, raw)[0]), "X-Last"), [""], "last header empty")


@test("obs-fold stays refused: after a value, after an empty value, with HT: 400 obs_fold")
def _(env):
    for lines in (["X-F: a", " b"], ["X-F:", " b"], ["X-F: a", "\tb"], ["X-F:", "\t"],
                  ["X-F: a", " "]):
        _refused(env, _head(env, "GET", "/fold", lines), 400, "obs_fold", repr(lines))
    # whitespace between the request line and the first header
    raw = ("GET /fold HTTP/1.1\r\n Host: localhost\r\n%s\r\n" % _auth(env)).encode()
    _refused(env, raw, 400, "obs_fold", "whitespace before the first header")


# -- lingering close --------------------------------------------------------------------

def _write_all_then_read(env, gw, head, body_len, what):
    """A client that writes its whole body before reading (OkHttp, URLSession)."""
    with env.connect(gw, timeout=20) as c:
        c.send(head)
        piece = b"z" * 65536
        sent = 0
        try:
            while sent < body_len:
                c.send(piece)
                sent += len(piece)
        except REFUSAL_ERRORS as e:
            fail("%s: writing the body failed after %d bytes (%r): the gateway reset the "
                 "connection instead of lingering" % (what, sent, e))
        try:
            resp = c.read_response(timeout=10)
        except REFUSAL_ERRORS as e:
            fail("%s: the response was lost (%r)" % (what, e))
        closed = c.is_closed(5.0)
    return resp, closed


@test("lingering close: a client that writes a 12 MB body before reading gets the 413 intact",
      timeout=60)
def _(env):
    gw = env.gateway("limits")   # max_body_bytes 1m
    before = env.upstream_count()
    head = build_request("POST", "/linger", [("Content-Length", str(12 * MB))], bearer=env.bearer)
    resp, closed = _write_all_then_read(env, gw, head, 12 * MB, "declared length")
    eq(check_json_error(resp, 413)["error"], "payload_too_large", "error code")
    eq(resp.header("Connection"), "close", "Connection header")
    check(closed, "connection not closed after the 413")
    eq(env.upstream_count(), before, "upstream request count")
    # the limit found while streaming a chunked body (which has already
    # begun to reach the upstream)
    head = build_request("POST", "/linger", [("Transfer-Encoding", "chunked")], bearer=env.bearer)
    with env.connect(gw, timeout=20) as c:
        c.send(head)
        chunk = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"
        try:
            for _ in range(12 * 16):   # 12 MB
                c.send(chunk)
            c.send(b"0\r\n\r\n")
        except REFUSAL_ERRORS as e:
            fail("chunked: writing the body failed (%r)" % (e,))
        resp = c.read_response(timeout=10)
    eq(check_json_error(resp, 413)["error"], "payload_too_large", "chunked: error code")


@test("lingering close: a 431 sent while the client writes a large body arrives intact",
      timeout=60)
def _(env):
    gw = env.gateway("limits")   # max_header_bytes 4k
    head = build_request("POST", "/linger431", [("X-Big", "a" * 5000),
                                                ("Content-Length", str(8 * MB))], bearer=env.bearer)
    resp, closed = _write_all_then_read(env, gw, head, 8 * MB, "431")
    eq(check_json_error(resp, 431)["error"], "headers_too_large", "error code")
    check(closed, "connection not closed after the 431")


@test("lingering close is bounded by timeouts.lingering_close and limits.lingering_close_bytes",
      timeout=60)
def _(env):
    def first_write_error(gw, pace, limit_s):
        head = build_request("POST", "/bound", [("Content-Length", str(1024 * MB))],
                             bearer=env.bearer)
        with env.connect(gw, timeout=10) as c:
            c.send(head)
            t0 = time.monotonic()
            sent = 0
            try:
                while time.monotonic() - t0 < limit_s:
                    c.send(b"q" * 16384)
                    sent += 16384
                    if pace:
                        time.sleep(pace)
            except REFUSAL_ERRORS:
                return time.monotonic() - t0, sent
        return None, sent

    gw = env.start_gateway("linger-time", env.config({
        "limits": {"max_body_bytes": "64k"}, "timeouts": {"lingering_close": "1s"}}))
    try:
        t, _ = first_write_error(gw, 0.05, 8)
        check(t is not None and 0.8 <= t <= 4.0,
              "slow writer: expected the connection closed about 1s in, got %r" % t)
    finally:
        gw.stop()
    gw = env.start_gateway("linger-bytes", env.config({
        "limits": {"max_body_bytes": "64k", "lingering_close_bytes": "1m"},
        "timeouts": {"lingering_close": "30s"}}))
    try:
        t, sent = first_write_error(gw, 0, 20)
        check(t is not None and t < 10, "fast writer: not cut after the 1m cap (%r s, %d bytes)"
              % (t, sent))
        check(sent < 64 * MB, "fast writer: %d bytes accepted with a 1m cap" % sent)
    finally:
        gw.stop()


@test("config: lingering keys validated (0 turns lingering off), errors at file:line:col")
def _(env):
    def check_cfg(name, overrides):
        path = os.path.join(env.tmp, name)
        with open(path, "w") as f:
            f.write(to_yaml(env.config(overrides)))
        r = subprocess.run([BINARY, "--check", "-c", path], capture_output=True, text=True,
                           timeout=10)
        return r.returncode, r.stdout + r.stderr, path

    rc, out, _ = check_cfg("linger-off.yaml", {"timeouts": {"lingering_close": "0s"},
                                                "limits": {"lingering_close_bytes": "64m"}})
    eq(rc, 0, "valid lingering keys (%s)" % short(out))
    for over, key in (({"timeouts": {"lingering_close": "forever"}}, "timeouts.lingering_close"),
                      ({"timeouts": {"lingering_close": "11m"}}, "timeouts.lingering_close"),
                      ({"limits": {"lingering_close_bytes": "12"}}, "limits.lingering_close_bytes"),
                      ({"limits": {"lingering_close_bytes": "lots"}}, "limits.lingering_close_bytes")):
        rc, out, path = check_cfg("linger-bad.yaml", over)
        eq(rc, 2, "%r: exit status (%s)" % (over, short(out)))
        check(path + ":" in out and key in out, "%r: no %s:line:col error naming %s: %s"
              % (over, path, key, short(out, 400)))


# -- Expect: 100-continue refused ----------------------------------------------------------

@test("Expect: 100-continue refused without Connection: close: the refusal, then closed")
def _(env):
    gw = env.gateway("main")
    before = env.upstream_count()
    refused = (b"POST /expect HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
               b"Content-Length: 10\r\n\r\n")   # no bearer: 401
    # the client skips the body it announced and sends its next request
    nxt = build_request("GET", "/after-expect", bearer=env.bearer)
    with env.connect(gw) as c:
        c.send(refused + nxt)
        resp = c.read_response()
        eq(check_json_error(resp, 401)["error"], "missing_token", "error code")
        eq(resp.header("Connection"), "close", "Connection header")
        check(c.is_closed(2.0), "connection still open: a second response could follow (%r)"
              % bytes(c.buf[:200]))
    eq(env.upstream_count(), before, "upstream request count")
    # a client that waits for the answer before sending anything more
    with env.connect(gw) as c:
        c.send(refused)
        resp = c.read_response()
        eq(check_json_error(resp, 401)["error"], "missing_token", "waiting client: error code")
        eq(resp.header("Connection"), "close", "waiting client: Connection header")
        check(c.is_closed(2.0), "waiting client: connection still open")


@test("Expect: 100-continue accepted: 100 Continue, then the body forwarded")
def _(env):
    gw = env.gateway("main")
    body = os.urandom(5000)
    with env.connect(gw) as c:
        c.send(build_request("POST", "/expect-ok", [("Expect", "100-continue"),
                                                    ("Content-Length", str(len(body)))],
                             bearer=env.bearer))
        head = c._read_until(b"\r\n\r\n", 4096, 5)
        eq(head, b"HTTP/1.1 100 Continue\r\n\r\n", "interim response")
        c.send(body)
        info = upstream_info(c.read_response())
        eq(info["body_sha256"], sha256(body), "body")
        upstream_info(c.request("GET", "/expect-next"), "next request on the connection")


# -- the end of the drain time -------------------------------------------------------------

@test("a request still running when timeouts.drain ends gets a 503 shutting_down", timeout=40)
def _(env):
    gw = env.start_gateway("drain-503", env.config({"timeouts": {"drain": "1s"}}))
    try:
        slow = env.connect(gw, timeout=10)
        slow.send(build_request("GET", "/slow?ms=6000", bearer=env.bearer))
        partial = env.connect(gw, timeout=10)
        partial.send(b"GET /partial HTTP/1.1\r\nHost: localhost\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        for c, what in ((slow, "request waiting for the upstream"),
                        (partial, "request head still arriving")):
            with c:
                resp = c.read_response(timeout=8)
                eq(check_json_error(resp, 503, what)["error"], "shutting_down", what + ": error code")
                eq(resp.header("Connection"), "close", what + ": Connection header")
                check(c.is_closed(2.0), what + ": connection left open")
        elapsed = time.monotonic() - t0
        check(elapsed < 3.5, "503s came %.1fs after SIGTERM (drain 1s)" % elapsed)
        try:
            rc = gw.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            fail("gateway still running after the drain time")
        eq(rc, 0, "exit status")
    finally:
        gw.stop(grace=2)


# -- JSON logs -------------------------------------------------------------------------------

@test("JSON logs keep the connection's whole action (several words)")
def _(env):
    gw = env.start_gateway("json-log", env.config({"logging": {"format": "json",
                                                               "level": "debug"}}))
    try:
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/json-log"))
        time.sleep(0.3)
    finally:
        gw.stop()
    with open(gw.log_path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.startswith("{")]
    check(lines, "no JSON log lines")
    actions = set()
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            fail("log line is not JSON: %s" % short(ln))
        if "action" in obj:
            actions.add(obj["action"])
        check(not any(k in obj for k in ("for", "request", "response")),
              "words of a value became members: %s" % short(ln, 300))
    check("waiting for request" in actions, "no action 'waiting for request' in %r" % actions)
    check(any('"event":"access"' in ln and '"path":"/json-log"' in ln for ln in lines),
          "no access line for /json-log")
