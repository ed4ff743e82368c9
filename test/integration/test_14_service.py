"""Running as a service (issue 14): the descriptor limit and the accept
backoff when descriptors run out, user:/group: (the drop after binding, and
--upgrade between a root-started process and a dropped one), systemd's
readiness notifications (NOTIFY_SOCKET) and the unit in contrib/, checked
with systemd-analyze verify."""

import ctypes
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import time

from harness import (BINARY, REPO, TIME_FACTOR, Gateway, SetupError, check, eq, fail, free_port,
                     kill_group, test, upstream_info, wait_tcp)
from testkit import wait_until
from upgradekit import start_b, wait_log

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _preexec(nofile=None):
    """preexec_fn: die with the test runner (as harness.spawn does) and,
    with nofile, a soft and hard RLIMIT_NOFILE the gateway cannot raise."""
    def fn():
        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return fn


def _start(env, name, cfg, nofile=None, environ=None, args=()):
    """A private gateway like env.start_gateway, with a descriptor limit
    and extra arguments; returns it once it listens."""
    gw = Gateway(env, name, cfg, environ)
    log = open(gw.log_path, "ab")
    try:
        gw.proc = subprocess.Popen([BINARY, "-c", gw.config_path] + list(args), cwd=env.tmp,
                                   stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=_preexec(nofile),
                                   env=dict(os.environ, **(environ or {})))
    finally:
        log.close()
    try:
        wait_tcp(gw.port, gw.proc, 10 * TIME_FACTOR, "gateway %r" % name)
    except SetupError as e:
        gw.stop(grace=1)
        fail("%s; log: %s" % (e, gw.log_tail(8, joined=True)))
    return gw


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime


def _open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _scrape(port):
    """{(name, frozenset(labels.items())): value} of GET /metrics on port."""
    from prometheus_client.parser import text_string_to_metric_families
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        resp = c.getresponse()
        status, text = resp.status, resp.read().decode()
    finally:
        c.close()
    eq(status, 200, "GET /metrics")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _log_has(gw, text):
    return any(text in ln for ln in gw.log_tail(100000))


# ---------------------------------------------------------------------------
# descriptors


@test("descriptors: a low hard RLIMIT_NOFILE is warned about with the numbers; a flood that "
      "exhausts it pauses accepting (low CPU, counted, logged once), the existing connection "
      "keeps being answered, and new connections are served once the flood closes", timeout=90)
def _(env):
    mport = free_port()
    limit = 64
    cfg = env.config({"workers": 1, "metrics": {"address": "127.0.0.1:%d" % mport},
                      "tls": {"handshake_timeout": "30s"},
                      "limits": {"accept_backoff": "100ms"}})
    gw = _start(env, "fd-flood", cfg, nofile=limit)
    flood = []
    try:
        wait_tcp(mport, gw.proc, 10, "metrics listener")
        need = "RLIMIT_NOFILE allows %d (hard limit %d)" % (limit, limit)
        check(wait_until(lambda: _log_has(gw, need), 5), "no WARN line about the unreachable "
              "descriptor need: %s" % gw.log_tail(5, joined=True))
        warn = [ln for ln in gw.log_tail(100000) if need in ln][0]
        check("limits.max_connections x 2 = 2000" in warn and "WARN" in warn.upper(),
              "the WARN line does not give the numbers: %s" % warn)
        c = env.connect(gw)
        before = env.upstream_count()
        upstream_info(c.request("GET", "/api/before-flood"), "request before the flood")
        # the flood: plain TCP connections that never send a byte
        for _ in range(3 * limit):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", gw.port))
            except BlockingIOError:
                pass
            flood.append(s)
        check(wait_until(lambda: _log_has(gw, "not accepting new connections"), 10),
              "the gateway never paused accepting: %s" % gw.log_tail(5, joined=True))
        check(_open_fds(gw.pid) >= limit - 2, "the gateway has only %d descriptors open: the flood "
              "did not exhaust them" % _open_fds(gw.pid))
        cpu0, t0 = _cpu_seconds(gw.pid), time.monotonic()
        for i in range(6):   # the existing connection is answered throughout
            upstream_info(c.request("GET", "/api/during-flood-%d" % i), "request %d during the flood" % i)
            time.sleep(0.5)
        used, wall = _cpu_seconds(gw.pid) - cpu0, time.monotonic() - t0
        check(used < 0.25 * wall, "the gateway used %.2fs of CPU in %.1fs while out of descriptors "
              "(spinning?)" % (used, wall))
        eq(env.upstream_count() - before, 7, "requests that reached the upstream")
        paused = [ln for ln in gw.log_tail(100000) if "not accepting new connections" in ln]
        eq(len(paused), 1, "lines about the pause (one per episode)")
        for s in flood:
            s.close()
        flood = []

        def served():
            try:
                with env.connect(gw, timeout=2) as n:
                    return n.request("GET", "/api/after-flood").status == 200
            except (OSError, TimeoutError):
                return False
        check(wait_until(served, 15), "no new connection served after the flood closed: %s"
              % gw.log_tail(5, joined=True))
        check(wait_until(lambda: _log_has(gw, "accepting again after"), 5),
              "no line about accepting again: %s" % gw.log_tail(5, joined=True))
        m = _scrape(mport)
        emfile = m.get(("portcullis_accept_errors_total", frozenset({("reason", "emfile")})), 0)
        check(emfile >= 1, "portcullis_accept_errors_total{reason=\"emfile\"} is %s" % emfile)
        eq(m.get(("portcullis_accept_errors_total", frozenset({("reason", "other")}))), 0.0,
           "accept errors counted as other")
        eq(m.get(("process_max_fds", frozenset())), float(limit), "process_max_fds")
        c.close()
    finally:
        for s in flood:
            s.close()
        gw.stop()


@test("descriptors: the soft RLIMIT_NOFILE is raised to what limits.max_connections needs "
      "(up to the hard limit), and logged")
def _(env):
    cfg = env.config({"workers": 1, "limits": {"max_connections": 3000}})
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8000:
        fail("the test runner's hard RLIMIT_NOFILE is %d; it needs 8000" % hard)

    def fn():
        _preexec()()
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    gw = Gateway(env, "fd-raise", cfg)
    log = open(gw.log_path, "ab")
    try:
        gw.proc = subprocess.Popen([BINARY, "-c", gw.config_path], cwd=env.tmp, stdout=log,
                                   stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=fn)
    finally:
        log.close()
    try:
        wait_tcp(gw.port, gw.proc, 10 * TIME_FACTOR, "gateway fd-raise")
        with open("/proc/%d/limits" % gw.pid) as f:
            line = [ln for ln in f if ln.startswith("Max open files")][0]
        soft = int(line.split()[3])
        check(soft >= 6000, "soft limit %d: not raised for max_connections 3000 x 2" % soft)
        check(_log_has(gw, "descriptor limit (RLIMIT_NOFILE) raised from 1024 to %d" % soft),
              "no line about the raise: %s" % gw.log_tail(5, joined=True))
        check(not _log_has(gw, "RLIMIT_NOFILE allows"), "a WARN line although the need was met")
    finally:
        gw.stop()


# ---------------------------------------------------------------------------
# systemd


class NotifySocket:
    """A fake service manager: the datagram socket $NOTIFY_SOCKET names."""

    def __init__(self, env, name):
        self.path = os.path.join(env.tmp, "notify-%s.sock" % name)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)   # a dropped gateway writes to it too

    def next(self, timeout=10.0):
        """The next message as a dict of its KEY=value lines."""
        self.sock.settimeout(timeout * TIME_FACTOR)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            fail("no notification within %.0fs" % timeout)
        return dict(ln.split("=", 1) for ln in data.decode().split("\n") if "=" in ln)

    def close(self):
        self.sock.close()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@test("sd_notify: READY=1 once listening, RELOADING=1 then READY=1 on SIGHUP (applied or "
      "refused), STOPPING=1 on SIGTERM", timeout=60)
def _(env):
    ns = NotifySocket(env, "cycle")
    cfg = env.config({"workers": 1})
    gw = Gateway(env, "notify", cfg, {"NOTIFY_SOCKET": ns.path})
    log = open(gw.log_path, "ab")
    try:
        gw.proc = subprocess.Popen([BINARY, "-c", gw.config_path], cwd=env.tmp, stdout=log,
                                   stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_preexec(),
                                   env=dict(os.environ, NOTIFY_SOCKET=ns.path))
    finally:
        log.close()
    try:
        m = ns.next()
        eq(m.get("READY"), "1", "first notification %r" % m)
        check(_listening(gw.port), "READY=1 came before the listener accepts")
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/api/notify"), "request after READY=1")
        os.kill(gw.pid, signal.SIGHUP)
        m = ns.next()
        eq(m.get("RELOADING"), "1", "notification on SIGHUP %r" % m)
        check(m.get("MONOTONIC_USEC", "").isdigit(), "RELOADING=1 without MONOTONIC_USEC: %r" % m)
        m = ns.next()
        eq(m.get("READY"), "1", "notification after the reload %r" % m)
        eq(m.get("STATUS"), "serving, configuration generation 2", "STATUS after the reload")
        with open(gw.config_path, "a") as f:
            f.write("no_such_key: 1\n")
        os.kill(gw.pid, signal.SIGHUP)
        eq(ns.next().get("RELOADING"), "1", "notification on a SIGHUP that will be refused")
        m = ns.next()
        eq(m.get("READY"), "1", "notification after the refused reload %r" % m)
        eq(m.get("STATUS"), "serving, configuration generation 2", "STATUS after the refusal")
        os.kill(gw.pid, signal.SIGTERM)
        m = ns.next()
        eq(m.get("STOPPING"), "1", "notification on SIGTERM %r" % m)
        eq(gw.proc.wait(timeout=15 * TIME_FACTOR), 0, "exit status")
    finally:
        gw.stop()
        ns.close()


@test("contrib/portcullis.service: systemd-analyze verify finds nothing (ExecStart on the "
      "built binary)")
def _(env):
    tool = shutil.which("systemd-analyze")
    if not tool:
        fail("systemd-analyze is not installed (scripts/deps.sh installs systemd)")
    with open(os.path.join(REPO, "contrib", "portcullis.service")) as f:
        unit = f.read()
    check("/usr/local/bin/portcullis " in unit, "the unit's ExecStart is not /usr/local/bin/portcullis")
    for key in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NotifyAccess=",
                "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "RestrictAddressFamilies=",
                "SystemCallArchitectures=native", "LimitNOFILE="):
        check(key in unit, "the unit has no %s" % key)
    d = os.path.join(env.tmp, "unit")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "portcullis.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/local/bin/portcullis", os.path.abspath(BINARY)))
    r = subprocess.run([tool, "verify", path], capture_output=True, text=True, timeout=60)
    eq((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify")
    # the check is real: a mistake in the unit is reported
    with open(path, "a") as f:
        f.write("[Service]\nProtectSystem=sometimes\n")
    bad = unit.count("\n") + 2
    r = subprocess.run([tool, "verify", path], capture_output=True, text=True, timeout=60)
    check(":%d: Failed to parse protect system value" % bad in r.stdout + r.stderr, "systemd-analyze verify did not report a bad "
          "ProtectSystem=: %r" % (r.stdout + r.stderr))
