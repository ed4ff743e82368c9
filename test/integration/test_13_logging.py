"""Logging (issue 13): JSON lines with named fields, the access log, the
per-thread buffers and their writer (a stalled stderr never stalls a
request; dropped lines are counted), logging.file with SIGUSR1 reopen and
reload, configuration errors as config_error lines."""

import json
import os
import re
import signal
import subprocess
import time

from testkit import metric_value
from harness import (BINARY, H_DEVICE_ID, H_SERIAL, Gateway, check, eq, fail, free_port,
                     kill_group, short, test, to_yaml, upstream_info, wait_tcp)

TOKEN = "logging-admin-token-0123456789"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACCESS_FIELDS = ("time", "level", "event", "request_id", "client_addr", "client_port", "tls_version",
                 "tls_resumed", "class", "device_id", "cert_serial", "method", "path", "route",
                 "upstream", "upstream_server", "status", "error", "request_bytes", "response_bytes",
                 "duration_ms", "upstream_ms")


def _config(env, logging=None, admin_port=None, port=None):
    """Routes /api/ (device, proxied) and /boot/ (bootstrap only); anything
    else has no route (404). port: the listener's (a free one if None)."""
    cfg = env.config({"logging": dict({"format": "json", "access": True}, **(logging or {}))}, port=port)
    cfg["routes"] = [
        {"name": "api", "path": "/api/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False},
        {"name": "boot", "path": "/boot/", "upstream": "echo", "allow_classes": ["bootstrap"],
         "require_bearer": False},
    ]
    if admin_port:
        cfg["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    return cfg


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def _json_lines(path):
    out = []
    for ln in _lines(path):
        try:
            obj = json.loads(ln)
        except ValueError:
            fail("log line is not JSON: %s" % short(ln, 300))
        if not isinstance(obj, dict):
            fail("log line is not a JSON object: %s" % short(ln, 300))
        out.append(obj)
    return out


_rid_n = [0]


def _get(c, method, path, **kw):
    """A request with a request id of ours (X-Request-Id): (response, id)."""
    _rid_n[0] += 1
    rid = "logtest-%d-%d" % (os.getpid(), _rid_n[0])
    r = c.request(method, path, headers=[("X-Request-Id", rid)], **kw)
    return r, rid


def _wait_access(path, request_id, timeout=5.0):
    """The access line of request_id in the JSON log at path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for obj in _json_lines(path):
            if obj.get("event") == "access" and obj.get("request_id") == request_id:
                return obj
        time.sleep(0.05)
    fail("no access line for request %s in %s: %s" % (request_id, path, " | ".join(_lines(path)[-5:])))


def _wait_text(path, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in ln for ln in _lines(path)):
            return True
        time.sleep(0.05)
    return False


def _check_access(obj, **expected):
    for k in ACCESS_FIELDS:
        check(k in obj, "access line has no %r: %s" % (k, short(json.dumps(obj), 400)))
    check(TIME_RE.match(obj["time"]), "time is not RFC 3339 with milliseconds: %r" % obj["time"])
    eq(obj["level"], "info", "access level")
    for k in ("client_port", "status", "request_bytes", "response_bytes"):
        check(isinstance(obj[k], int) and not isinstance(obj[k], bool),
              "%s is not a JSON integer: %r" % (k, obj[k]))
    check(isinstance(obj["duration_ms"], (int, float)) and obj["duration_ms"] >= 0,
          "duration_ms: %r" % obj["duration_ms"])
    check(isinstance(obj["tls_resumed"], bool), "tls_resumed is not a boolean")
    for k, v in expected.items():
        eq(obj[k], v, "access field %s" % k)


@test("access log (JSON): a proxied 200, a 404 and a 403 with their error codes, every field typed")
def _(env):
    gw = env.start_gateway("log-access", _config(env))
    try:
        dev = env.identity("device", "device")
        with env.connect(gw) as c:
            r, rid = _get(c, "POST", "/api/items?token=secret-query", body=b"0123456789")
            upstream_info(r)
            ok = _wait_access(gw.log_path, rid)
            r404, rid = _get(c, "GET", "/nowhere")
            eq(r404.status, 404, "no route")
            eq(r404.header("X-Request-Id"), rid, "the request id answered")
            e404 = _wait_access(gw.log_path, rid)
            client_port = c.sock.getsockname()[1]
        _check_access(ok, event="access", method="POST", path="/api/items", route="api", upstream="echo",
                      upstream_server="127.0.0.1:%d" % env.upstream_port, status=200, error=None,
                      request_bytes=10, response_bytes=len(r.body), client_addr="127.0.0.1",
                      client_port=client_port, tls_resumed=False, device_id=dev[H_DEVICE_ID],
                      cert_serial=dev[H_SERIAL], **{"class": "device"})
        check(dev[H_DEVICE_ID], "the test certificate has a device id")
        check(ok["tls_version"] in ("TLSv1.2", "TLSv1.3"), "tls_version %r" % ok["tls_version"])
        check(isinstance(ok["upstream_ms"], (int, float)) and 0 <= ok["upstream_ms"] <= ok["duration_ms"],
              "upstream_ms %r within duration_ms %r" % (ok["upstream_ms"], ok["duration_ms"]))
        check("secret-query" not in json.dumps(ok), "the query string is not logged")
        _check_access(e404, method="GET", path="/nowhere", route=None, upstream=None,
                      upstream_server=None, status=404, error="no_route", upstream_ms=None,
                      response_bytes=len(r404.body))

        before = env.upstream_count()
        with env.connect(gw) as c:
            r403, rid = _get(c, "GET", "/boot/x")
        eq(r403.status, 403, "device on the bootstrap route")
        code = r403.json()["error"]
        eq(code, "class_not_allowed", "the 403's code")
        eq(env.upstream_count(), before, "the 403 reached the upstream")
        e403 = _wait_access(gw.log_path, rid)
        _check_access(e403, route="boot", status=403, error=code, upstream_server=None, upstream_ms=None)
        for obj in _json_lines(gw.log_path):
            check("Authorization" not in json.dumps(obj) and env.bearer not in json.dumps(obj),
                  "a token in the log: %s" % short(json.dumps(obj), 300))
    finally:
        gw.stop()


@test("access log (JSON): an absolute-form target (400 bad_path) logs no path, so no userinfo")
def _(env):
    gw = env.start_gateway("log-absolute", _config(env))
    try:
        before = env.upstream_count()
        with env.connect(gw) as c:
            r, rid = _get(c, "GET", "http://alice:s3cret-pw@localhost/api/x")
        eq((r.status, r.json()["error"]), (400, "bad_path"), "an absolute-form target")
        eq(env.upstream_count(), before, "nothing reached the upstream")
        obj = _wait_access(gw.log_path, rid)
        _check_access(obj, path=None, route=None, status=400, error="bad_path")
        check(not any("s3cret-pw" in ln for ln in _lines(gw.log_path)), "the userinfo is in the log")
    finally:
        gw.stop()


@test("access log (JSON): a resumed connection says tls_resumed true")
def _(env):
    gw = env.start_gateway("log-resumed", _config(env))
    try:
        ctx = env.client_context()
        with env.connect(gw, ctx=ctx) as c:
            eq(c.request("GET", "/api/first").status, 200, "first request")
            session = c.session
        with env.connect(gw, ctx=ctx, session=session) as c2:
            r, rid = _get(c2, "GET", "/api/second")
            eq(r.status, 200, "resumed request")
            check(c2.session_reused, "the session was not resumed")
        obj = _wait_access(gw.log_path, rid)
        _check_access(obj, tls_resumed=True, path="/api/second", status=200)
    finally:
        gw.stop()


@test("JSON mode: every line (startup, access, reload, config errors, stop) is one object with time, level, event")
def _(env):
    gw = env.start_gateway("log-every-line", _config(env, {"level": "debug"}))
    try:
        with env.connect(gw) as c:
            c.request("GET", "/api/a")
            c.request("GET", "/none")
        # a reload refused for an error with a position: a config_error line with it as fields
        cfg = _config(env, {"level": "debug"}, port=gw.port)
        cfg["limits"]["max_headers"] = "many"
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(cfg))
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(gw.log_path, "config_error"), "no config_error line after SIGHUP")
    finally:
        gw.stop()
    objs = _json_lines(gw.log_path)
    check(len(objs) > 5, "only %d lines" % len(objs))
    for obj in objs:
        for k in ("time", "level", "event"):
            check(k in obj, "line without %r: %s" % (k, short(json.dumps(obj), 300)))
        check(TIME_RE.match(obj["time"]), "time %r" % obj["time"])
        check(re.match(r"^[a-z][a-z0-9_]*$", obj["event"]), "event %r not snake_case" % obj["event"])
        check(obj["level"] in ("error", "warn", "info", "debug"), "level %r" % obj["level"])
    events = {o["event"] for o in objs}
    for ev in ("listening", "access", "reload_failed", "config_error", "draining", "stopped"):
        check(ev in events, "no %r line among events %s" % (ev, sorted(events)))
    errs = [o for o in objs if o["event"] == "config_error"]
    eq(len(errs), 1, "config_error lines")
    e = errs[0]
    eq(e.get("file"), gw.config_path, "config_error file")
    eq(e.get("key"), "limits.max_headers", "config_error key")
    check(isinstance(e.get("line"), int) and isinstance(e.get("column"), int) and e["line"] > 1,
          "config_error line/column: %s" % json.dumps(e))
    check("integer" in e.get("msg", ""), "config_error msg: %r" % e.get("msg"))
    conn_lines = [o for o in objs if "conn" in o and "action" in o]
    check(conn_lines, "no line with the connection context")
    check(any(o["action"] == "waiting for request" for o in conn_lines) or
          any(" " in o["action"] for o in conn_lines), "connection actions cut to a word")


@test("access log (text): the same fields as key=value, values with spaces quoted")
def _(env):
    gw = env.start_gateway("log-text", _config(env, {"format": "text"}))
    try:
        with env.connect(gw) as c:
            r, rid = _get(c, "GET", "/api/t%20x")
            eq(r.status, 200, "request")
        check(_wait_text(gw.log_path, "request_id=" + rid), "no access line")
        line = [ln for ln in _lines(gw.log_path) if "request_id=" + rid in ln][0]
        for part in ("event=access", "method=GET", "path=/api/t%20x", "route=api", "upstream=echo",
                     "status=200", "error=-", "class=device", "tls_resumed=false", "client_addr=127.0.0.1"):
            check(" " + part + " " in line + " ", "%r not in %s" % (part, line))
        check(re.search(r" duration_ms=\d+\.\d{3}( |$)", line), "duration_ms: %s" % line)
    finally:
        gw.stop()


def _rotate_cfg(env, path, port=None):
    return _config(env, {"file": path}, port=port)


@test("logging.file: lines go to the file; SIGUSR1 after a rename reopens it by its name")
def _(env):
    path = os.path.join(env.tmp, "rotate.log")
    gw = env.start_gateway("log-file", _rotate_cfg(env, path))
    try:
        with env.connect(gw) as c:
            r1, rid1 = _get(c, "GET", "/api/before")
        _wait_access(path, rid1)
        check(not any('"event":"access"' in ln for ln in _lines(gw.log_path)),
              "access lines on stderr with logging.file set")
        os.rename(path, path + ".1")
        os.kill(gw.pid, signal.SIGUSR1)
        check(_wait_text(path, "log_reopened"), "no log_reopened line in the new file")
        with env.connect(gw) as c:
            r2, rid2 = _get(c, "GET", "/api/after")
        _wait_access(path, rid2)
        old = "\n".join(_lines(path + ".1"))
        check(rid1 in old and rid2 not in old, "the renamed file holds the lines before the reopen only")
        check(rid1 not in "\n".join(_lines(path)), "the new file has old lines")
        eq(oct(os.stat(path).st_mode & 0o777), oct(0o640 & ~_umask()), "mode of the new file")
        check(gw.alive(), "SIGUSR1 stopped the gateway")
    finally:
        gw.stop()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


@test("logging.file: a reload moves lines to another file; one that cannot be created refuses the reload")
def _(env):
    a, b = os.path.join(env.tmp, "reload-a.log"), os.path.join(env.tmp, "reload-b.log")
    gw = env.start_gateway("log-file-reload", _rotate_cfg(env, a))
    try:
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(_rotate_cfg(env, b, gw.port)))
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(b, "generation 2 applied"), "the reload's line is not in the new file: %s"
              % _lines(a)[-3:])
        with env.connect(gw) as c:
            r, rid = _get(c, "GET", "/api/b")
        _wait_access(b, rid)
        check(rid not in "\n".join(_lines(a)), "line in the old file")

        bad = _rotate_cfg(env, "/nonexistent-dir/x.log", gw.port)
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(bad))
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(b, "reload_failed"), "no reload_failed line")
        errs = [o for o in _json_lines(b) if o["event"] == "config_error"]
        eq(len(errs), 1, "config_error lines")
        eq(errs[0].get("key"), "logging.file", "key of the error")
        check("cannot create" in errs[0].get("msg", ""), "msg: %r" % errs[0].get("msg"))
        with env.connect(gw) as c:
            r, rid = _get(c, "GET", "/api/still-b")
        _wait_access(b, rid)

        buf = _rotate_cfg(env, b, gw.port)
        buf["logging"]["buffer"] = "1m"
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(buf))
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(b, "logging.buffer: changed from 262144 to 1048576; this key needs a restart"),
              "logging.buffer change not refused as restart-only: %s" % _lines(b)[-3:])
    finally:
        gw.stop()


def _metric(admin_port, name):
    return metric_value(admin_port, TOKEN, name)


@test("a stalled stderr (a pipe nobody reads) never stalls requests; dropped lines are counted", timeout=90)
def _(env):
    admin = free_port()
    cfg = _config(env, {"buffer": "16k", "level": "debug"}, admin_port=admin)
    gw = Gateway(env, "log-stalled", cfg)
    proc = subprocess.Popen([BINARY, "-c", gw.config_path], cwd=env.tmp, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PORTCULLIS_ADMIN_TOKEN=TOKEN), start_new_session=True)
    try:
        wait_tcp(gw.port, proc, 10, "gateway")
        wait_tcp(admin, proc, 10, "admin listener")
        dropped0 = _metric(admin, "portcullis_log_lines_dropped_total")
        # nobody reads stderr: the pipe (64 KiB) and then the 16 KiB rings fill
        lat = []
        with env.connect(gw) as c:
            for i in range(1500):
                t0 = time.monotonic()
                r = c.request("GET", "/api/flood/%d" % i)
                lat.append(time.monotonic() - t0)
                if r.status != 200:
                    fail("request %d: %d" % (i, r.status))
        dropped = _metric(admin, "portcullis_log_lines_dropped_total") - dropped0
        lat.sort()
        p50, p99, worst = lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1]
        print("# 1500 requests: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d lines dropped"
              % (p50 * 1e3, p99 * 1e3, worst * 1e3, dropped))
        check(dropped > 1000, "only %d lines dropped" % dropped)
        check(worst < 1.0, "a request took %.2fs with stderr stalled" % worst)
        check(p99 < 0.2, "p99 %.0f ms with stderr stalled" % (p99 * 1e3))
        # once stderr is read again, new lines come through
        data = b""
        proc.stderr.read1(1 << 20)
        with env.connect(gw) as c:
            r, rid = _get(c, "GET", "/api/after-stall")
        rid = rid.encode()
        deadline = time.monotonic() + 5
        os.set_blocking(proc.stderr.fileno(), False)
        while rid not in data and time.monotonic() < deadline:
            try:
                chunk = proc.stderr.read1(1 << 20)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk
            else:
                time.sleep(0.05)
        check(rid in data, "the access line of a request after the stall never came")
    finally:
        kill_group(proc, 8)
        proc.stderr.close()


@test("shutdown: every line buffered before SIGTERM is written, and the exit is prompt")
def _(env):
    gw = env.start_gateway("log-drain", _config(env))
    rids = []
    with env.connect(gw) as c:
        for i in range(300):
            r, rid = _get(c, "GET", "/api/d/%d" % i)
            eq(r.status, 200, "request %d" % i)
            rids.append(rid)
    t0 = time.monotonic()
    os.kill(gw.pid, signal.SIGTERM)
    try:
        rc = gw.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        fail("gateway still running 15s after SIGTERM")
    took = time.monotonic() - t0
    gw.expect_exit = True
    eq(rc, 0, "exit status")
    check(took < 3.0, "the exit took %.1fs (nothing in flight)" % took)
    objs = _json_lines(gw.log_path)
    logged = {o.get("request_id") for o in objs if o.get("event") == "access"}
    missing = [r for r in rids if r not in logged]
    eq(missing, [], "access lines missing after the exit")
    eq(objs[-1].get("event"), "stopped", "the last line")


@test("shutdown with stderr stalled: the exit waits at most 5 s for the log, then exits 0", timeout=60)
def _(env):
    cfg = _config(env, {"buffer": "16k"})
    cfg["timeouts"]["drain"] = "1s"
    gw = Gateway(env, "log-stalled-exit", cfg)
    proc = subprocess.Popen([BINARY, "-c", gw.config_path], cwd=env.tmp, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_tcp(gw.port, proc, 10, "gateway")
        with env.connect(gw) as c:
            for i in range(600):
                eq(c.request("GET", "/api/s/%d" % i).status, 200, "request %d" % i)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("gateway still running 20s after SIGTERM with stderr stalled")
        took = time.monotonic() - t0
        eq(rc, 0, "exit status")
        check(4.0 < took < 9.0, "exit %.1fs after SIGTERM (bound: 5 s for the log)" % took)
    finally:
        kill_group(proc, 3)
        proc.stderr.close()
