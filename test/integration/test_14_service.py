"""Running as a service (issue 14): the descriptor limit and the accept
backoff when descriptors run out, user:/group: (the drop after binding, and
--upgrade between a root-started process and a dropped one), systemd's
readiness notifications (NOTIFY_SOCKET) and the unit in contrib/, checked
with systemd-analyze verify."""

import contextlib
import ctypes
import os
import pwd
import resource
import shutil
import signal
import socket
import struct
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


def _popen(env, gw, preexec_fn, args=(), binary=BINARY, cwd=None, environ=None):
    """Start binary on gw's configuration (output to gw's log, a session of
    its own, environ added to the runner's environment) without waiting."""
    log = open(gw.log_path, "ab")
    try:
        gw.proc = subprocess.Popen([binary, "-c", gw.config_path] + list(args),
                                   cwd=cwd or env.tmp, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=preexec_fn, env=dict(os.environ, **(environ or {})))
    finally:
        log.close()


def _start(env, name, cfg, nofile=None, environ=None, args=(), binary=BINARY):
    """A private gateway like env.start_gateway, with a descriptor limit
    and extra arguments; returns it once it listens."""
    gw = Gateway(env, name, cfg, environ)
    _popen(env, gw, _preexec(nofile), args=args, binary=binary, environ=environ)
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
      "keeps being answered, the metrics listener and the upgrade socket do not spin either, "
      "and new connections are served once the flood closes", timeout=90)
def _(env):
    mport = free_port()
    limit = 64
    usock = os.path.join(env.tmp, "fd-flood-upgrade.sock")
    cfg = env.config({"workers": 1, "metrics": {"address": "127.0.0.1:%d" % mport},
                      "tls": {"handshake_timeout": "30s"}, "upgrade_socket": usock,
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
        # a connection queued on the metrics listener and one on the upgrade socket, which
        # cannot be accepted either: neither may turn the control thread into a busy loop
        ms = socket.socket()
        ms.setblocking(False)
        try:
            ms.connect(("127.0.0.1", mport))
        except BlockingIOError:
            pass
        flood.append(ms)
        us = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        us.connect(usock)
        flood.append(us)
        check(wait_until(lambda: _log_has(gw, "metrics listener: accept: Too many open files; "
                                              "paused for 100ms"), 5),
              "the metrics listener did not pause: %s" % gw.log_tail(5, joined=True))
        check(wait_until(lambda: _log_has(gw, "upgrade socket %s: accept: Too many open files; "
                                              "paused for 100ms" % usock), 5),
              "the upgrade socket did not pause: %s" % gw.log_tail(5, joined=True))
        size0 = os.path.getsize(gw.log_path)
        cpu0, t0 = _cpu_seconds(gw.pid), time.monotonic()
        for i in range(6):   # the existing connection is answered throughout
            upstream_info(c.request("GET", "/api/during-flood-%d" % i), "request %d during the flood" % i)
            time.sleep(0.5)
        used, wall = _cpu_seconds(gw.pid) - cpu0, time.monotonic() - t0
        check(used < 0.25 * wall, "the gateway used %.2fs of CPU in %.1fs while out of descriptors "
              "(spinning?)" % (used, wall))
        grown = os.path.getsize(gw.log_path) - size0
        check(grown < 10000, "the log grew by %d bytes in %.1fs while out of descriptors" % (grown, wall))
        eq(env.upstream_count() - before, 7, "requests that reached the upstream")
        paused = [ln for ln in gw.log_tail(100000) if "not accepting new connections" in ln]
        eq(len(paused), 1, "lines about the worker's pause (one per episode)")
        for what in ("metrics listener: accept:", "upgrade socket %s: accept:" % usock):
            eq(len([ln for ln in gw.log_tail(100000) if what in ln]), 1,
               "lines about the pause of the %s (one per episode)" % what.split(":")[0])
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
        check(wait_until(lambda: _log_has(gw, "metrics listener: accepting again after"), 5),
              "no line about the metrics listener accepting again: %s" % gw.log_tail(5, joined=True))
        m = _scrape(mport)   # GET /metrics answered 200 after the flood
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


@test("descriptors: an upstream server given as a DNS name counts as 8 endpoints (each with "
      "its own keep-alive pool) in the need")
def _(env):
    from test_14_dns import DnsServer
    dns = DnsServer()
    dns.set("api.test", ["127.0.0.1"])
    cfg = env.config({"workers": 2, "limits": {"max_connections": 10},
                      "resolver": {"nameservers": ["127.0.0.1:%d" % dns.port], "interval": "1h",
                                   "timeout": "300ms", "attempts": 1}})
    up = cfg["upstreams"][0]
    port = up["servers"][0].rsplit(":", 1)[1]
    up["servers"] = ["127.0.0.1:%s" % port, "api.test:%s" % port]
    up["keepalive"] = 4
    gw = None
    try:
        gw = _start(env, "fd-dns", cfg, nofile=64)
        # 2 workers x 4 idle connections x (1 address + 8 for the name)
        need = "upstream keep-alive pools 72,"
        check(wait_until(lambda: _log_has(gw, need), 5), "the need does not count the name's "
              "endpoints: %s" % [ln for ln in gw.log_tail(100000) if "may need" in ln])
    finally:
        if gw is not None:
            gw.stop()
        dns.close()


@test("descriptors: the soft RLIMIT_NOFILE is raised before the listening sockets are bound, "
      "so a soft limit below what binding needs does not stop the start")
def _(env):
    cfg = env.config({"workers": 8})
    port2 = free_port()
    cfg["listeners"] = [cfg["listeners"][0], "127.0.0.1:%d" % port2]

    def fn():
        _preexec()()
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, 4096))
    gw = Gateway(env, "fd-early", cfg)
    _popen(env, gw, fn)
    try:
        wait_tcp(port2, gw.proc, 10 * TIME_FACTOR, "gateway fd-early")
        check(_log_has(gw, "descriptor limit (RLIMIT_NOFILE) raised from 16 to"),
              "no line about the raise: %s" % gw.log_tail(5, joined=True))
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/api/fd-early"), "request")
    finally:
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
    _popen(env, gw, fn)
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
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)   # who sent what
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)   # a dropped gateway writes to it too

    def next(self, timeout=10.0):
        """The next message as a dict of its KEY=value lines."""
        return self.next_from(timeout)[1]

    def next_from(self, timeout=10.0):
        """(the sender's pid, the next message as a dict), by SO_PASSCRED
        (as systemd tells who sent what)."""
        self.sock.settimeout(timeout * TIME_FACTOR)
        try:
            pid, data = self._recv()
        except socket.timeout:
            fail("no notification within %.0fs" % timeout)
        return pid, dict(ln.split("=", 1) for ln in data.split("\n") if "=" in ln)

    def _recv(self):
        """(the sender's pid by SCM_CREDENTIALS, the datagram's text) of the
        next datagram; socket.timeout when none comes in the socket's timeout."""
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        return pid, data.decode()

    def quiet(self, seconds):
        """[(pid, message)] of whatever arrives within seconds."""
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                out.append(self._recv())
            except socket.timeout:
                break
        return out

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
    _popen(env, gw, _preexec(), environ={"NOTIFY_SOCKET": ns.path})
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


@test("sd_notify: a service manager that does not read never stalls the gateway: reloads go "
      "on, the failed send is logged once, SIGTERM drains", timeout=60)
def _(env):
    ns = NotifySocket(env, "full")   # never read: its queue (max_dgram_qlen) fills
    cfg = env.config({"workers": 1})
    gw = _start(env, "notify-full", cfg, environ={"NOTIFY_SOCKET": ns.path})
    try:
        for n in range(2, 22):   # 2 datagrams each: far past the queue
            os.kill(gw.pid, signal.SIGHUP)
            check(wait_until(lambda: _log_has(gw, "reload: generation %d applied" % n), 10),
                  "reload %d stalled: %s" % (n, gw.log_tail(4, joined=True)))
        lines = [ln for ln in gw.log_tail(100000) if "NOTIFY_SOCKET: cannot send" in ln]
        eq(len(lines), 1, "lines about the failed notifications")
        check("Resource temporarily unavailable" in lines[0], "not EAGAIN: %s" % lines[0])
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/api/notify-full"), "request after the reloads")
        os.kill(gw.pid, signal.SIGTERM)
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


# ---------------------------------------------------------------------------
# user: / group:


def _ids(pid):
    """{"Uid": [...], "Gid": [...], "Groups": [...]} of every thread of pid."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        ids = {}
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k in ("Uid", "Gid", "Groups"):
                    ids[k] = v.split()
        out.append(ids)
    return out


def _readable_copy(env, name):
    """A copy of the PKI in a world-readable directory (keys too: test
    keys), so that a gateway running as nobody can read it again; and the
    overrides pointing the configuration at it."""
    import tempfile
    d = tempfile.mkdtemp(prefix="portcullis-svc-%s-" % name)
    os.chmod(d, 0o755)
    for fn in ("server.crt", "server.key", "device-ca.crt", "bootstrap-ca.crt"):
        shutil.copy(env.pki(fn), os.path.join(d, fn))
        os.chmod(os.path.join(d, fn), 0o644)
    tls = {"certificates": [{"cert": os.path.join(d, "server.crt"),
                             "key": os.path.join(d, "server.key")}],
           "classes": [{"name": "device", "ca": os.path.join(d, "device-ca.crt")},
                       {"name": "bootstrap", "ca": os.path.join(d, "bootstrap-ca.crt")}]}
    return d, tls


@contextlib.contextmanager
def _nobody_reads(env, name, open_tmp=True):
    """(d, tls) of _readable_copy for a gateway that runs as nobody; with
    open_tmp, env.tmp is opened (0711) so that nobody reaches the files the
    test makes readable there. Afterwards env.tmp is closed again (0700) and
    the copy removed, however the test ends."""
    d, tls = _readable_copy(env, name)
    try:
        if open_tmp:
            os.chmod(env.tmp, 0o711)
        yield d, tls
    finally:
        if open_tmp:
            os.chmod(env.tmp, 0o700)
        shutil.rmtree(d, ignore_errors=True)


def _need_root():
    if os.geteuid() != 0:
        fail("these tests start the gateway as root (the runner runs as uid %d)" % os.geteuid())


NOBODY = pwd.getpwnam("nobody")


@test("user: nobody: started as root, every thread runs as nobody/nogroup with no other group "
      "once listening, requests are served; a reload of files nobody cannot read is refused "
      "with a clear line and the running configuration keeps serving", timeout=60)
def _(env):
    _need_root()
    cfg = env.config({"workers": 2, "user": "nobody", "group": "nogroup"})
    gw = _start(env, "drop", cfg)
    try:
        check(wait_until(lambda: _log_has(gw, "running as user nobody (uid 65534, gid 65534)"), 5),
              "no line about the drop: %s" % gw.log_tail(5, joined=True))
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/api/dropped"), "request to a dropped gateway")
        ids = _ids(gw.pid)
        check(len(ids) >= 4, "only %d threads" % len(ids))
        for t in ids:
            eq(t["Uid"], ["65534"] * 4, "a thread's uids")
            eq(t["Gid"], [str(NOBODY.pw_gid)] * 4, "a thread's gids")
            eq(t["Groups"], [str(NOBODY.pw_gid)], "a thread's supplementary groups")
        # env.tmp (mkdtemp: 0700 root) holds the PKI: nobody cannot read it again
        os.kill(gw.pid, signal.SIGHUP)
        check(wait_until(lambda: _log_has(gw, "reload: the gateway runs as user nobody (uid 65534, "
                                              "the configuration's user:): every file the "
                                              "configuration names must be readable by that user"), 10),
              "no line saying why the reload failed: %s" % gw.log_tail(5, joined=True))
        check(_log_has(gw, "reload: refused, generation 1 keeps serving"), "reload not refused")
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/api/after-refused-reload"), "request after the refusal")
    finally:
        gw.stop()


@test("user: a reload as the dropped user works when it can read the files; user: changed "
      "by a reload is refused as restart-only", timeout=60)
def _(env):
    _need_root()
    with _nobody_reads(env, "reload") as (_d, tls):   # nobody reads the configuration file itself
        cfg = env.config({"workers": 1, "user": "nobody", "tls": tls})
        gw = _start(env, "drop-reload", cfg)
        try:
            os.chmod(gw.config_path, 0o644)
            os.kill(gw.pid, signal.SIGHUP)
            check(wait_until(lambda: _log_has(gw, "reload: generation 2 applied"), 10),
                  "reload as nobody not applied: %s" % gw.log_tail(5, joined=True))
            with open(gw.config_path) as f:
                text = f.read()
            with open(gw.config_path, "w") as f:
                f.write(text.replace("user: nobody", "user: daemon"))
            os.kill(gw.pid, signal.SIGHUP)
            check(wait_until(lambda: _log_has(gw, "user: changed from nobody to daemon; this key needs a "
                                                  "restart (the reload was refused)"), 10),
                  "user: change not refused as restart-only: %s" % gw.log_tail(5, joined=True))
            with env.connect(gw) as c:
                upstream_info(c.request("GET", "/api/after-user-change"), "request after the refusal")
        finally:
            gw.stop()


def _file_has(path, text):
    try:
        with open(path, errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


@test("user: nobody with logging.file: the file root created is given to nobody, so a reload "
      "is applied and SIGUSR1 after a rotation reopens the file (later lines, access lines too, "
      "land in the new one)", timeout=60)
def _(env):
    _need_root()
    with _nobody_reads(env, "logfile") as (d, tls):   # nobody reads the configuration file itself
        logdir = os.path.join(d, "log")
        os.mkdir(logdir)
        os.chown(logdir, NOBODY.pw_uid, NOBODY.pw_gid)   # nobody creates the file after a rename
        path = os.path.join(logdir, "gateway.log")
        cfg = env.config({"workers": 1, "user": "nobody", "tls": tls,
                          "logging": {"file": path, "access": True, "format": "json"}})
        gw = _start(env, "drop-logfile", cfg)
        try:
            os.chmod(gw.config_path, 0o644)
            check(wait_until(lambda: _file_has(path, "running as user nobody"), 5),
                  "no line about the drop in %s" % path)
            st = os.stat(path)
            eq((st.st_uid, st.st_gid), (NOBODY.pw_uid, NOBODY.pw_gid), "owner of the log file")
            os.kill(gw.pid, signal.SIGHUP)
            check(wait_until(lambda: _file_has(path, "reload: generation 2 applied"), 10),
                  "reload as nobody with logging.file not applied: %s" % open(path).read()[-600:])
            os.rename(path, path + ".1")
            os.kill(gw.pid, signal.SIGUSR1)
            check(wait_until(lambda: _file_has(path, "SIGUSR1: log file reopened"), 10),
                  "SIGUSR1 did not reopen the file: %s" % open(path + ".1").read()[-600:])
            with env.connect(gw) as c:
                upstream_info(c.request("GET", "/api/after-reopen"), "request after SIGUSR1")
            check(wait_until(lambda: _file_has(path, '"path":"/api/after-reopen"'), 5),
                  "no access line in the reopened file")
            check(not _file_has(path + ".1", "/api/after-reopen"), "the access line went to the old file")
        finally:
            gw.stop()


@test("user: set while not started as root: the gateway does not start (exit 1, a clear line); "
      "started as that very user it runs")
def _(env):
    _need_root()
    with _nobody_reads(env, "nonroot") as (_d, tls):

        def as_nobody():
            _preexec()()
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
        for user, expect in (("daemon", 1), ("nobody", None)):
            cfg = env.config({"workers": 1, "user": user, "tls": tls})
            gw = Gateway(env, "nonroot-%s" % user, cfg)
            os.chmod(gw.config_path, 0o644)
            _popen(env, gw, as_nobody, cwd="/")
            try:
                if expect is not None:
                    eq(gw.proc.wait(timeout=20 * TIME_FACTOR), expect, "exit status with user: %s" % user)
                    check(_log_has(gw, 'user: "daemon" is set, but the gateway was started as uid '
                                       '65534, not root, so it cannot switch to it'),
                          "no clear line: %s" % gw.log_tail(5, joined=True))
                    check(not _listening(gw.port), "the refused gateway listens")
                else:
                    wait_tcp(gw.port, gw.proc, 10 * TIME_FACTOR, "gateway as nobody")
                    with env.connect(gw) as c:
                        upstream_info(c.request("GET", "/api/as-nobody"), "request")
            finally:
                gw.stop()


@test("user: --upgrade from a gateway that dropped to nobody to a new one started as root "
      "works (the configured user may hand over), and the new one drops too", timeout=90)
def _(env):
    _need_root()
    with _nobody_reads(env, "upgrade", open_tmp=False) as (_d, tls):
        cfg = env.config({"workers": 1, "user": "nobody", "tls": tls})
        a = _start(env, "drop-up-a", cfg)
        b = None
        try:
            check(wait_until(lambda: _log_has(a, "running as user nobody"), 5), "A did not drop")
            b = start_b(env, "drop-up-b", cfg, upgrade=True)
            check(wait_log(b, "upgrade: the old process confirmed", 20),
                  "B did not take over: %s" % b.log_tail(6, joined=True))
            eq(a.proc.wait(timeout=20 * TIME_FACTOR), 0, "A's exit status after the handover")
            with env.connect(b.port) as c:
                upstream_info(c.request("GET", "/api/after-upgrade"), "request to B")
            for t in _ids(b.pid):
                eq(t["Uid"], ["65534"] * 4, "B's uids")
        finally:
            if b is not None:
                b.stop()
            a.stop()


@test("sd_notify: --upgrade: the old process sends MAINPID=<new pid> (systemd follows it with "
      "NotifyAccess=main), then the new one READY=1; the old one sends no STOPPING=1", timeout=90)
def _(env):
    ns = NotifySocket(env, "upgrade")
    cfg = env.config({"workers": 1})
    environ = {"NOTIFY_SOCKET": ns.path}
    a = _start(env, "notify-up-a", cfg, environ=environ)
    b = None
    try:
        pid, m = ns.next_from()
        eq((pid, m.get("READY")), (a.pid, "1"), "A's first notification %r" % m)
        check("MAINPID" not in m, "A sent MAINPID: %r" % m)
        b = _start(env, "notify-up-b", cfg, environ=environ, args=["--upgrade"])
        pid, m = ns.next_from(20)
        eq((pid, m.get("MAINPID"), m.get("READY")), (a.pid, str(b.pid), None),
           "the notification after the handover %r" % m)
        pid, m = ns.next_from(20)
        eq((pid, m.get("READY"), m.get("MAINPID")), (b.pid, "1", None), "B's notification %r" % m)
        check(wait_log(b, "upgrade: the old process confirmed", 20), "B did not take over")
        eq(a.proc.wait(timeout=20 * TIME_FACTOR), 0, "A's exit status")
        ns.sock.settimeout(0.5)
        try:
            extra = ns.sock.recv(4096)
            fail("a notification after the handover: %r" % extra)
        except socket.timeout:
            pass
        os.kill(b.pid, signal.SIGTERM)
        eq(ns.next().get("STOPPING"), "1", "B's notification on SIGTERM")
    finally:
        if b is not None:
            b.stop()
        a.stop()
        ns.close()


# ---------------------------------------------------------------------------
# SIGUSR2: the running gateway starts its successor itself


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _sigusr2_handover(env, name, overrides, prepare=None, binary=BINARY, replace=None):
    """A with a fake NOTIFY_SOCKET; SIGUSR2: A sends MAINPID=<B>, B (A's
    child, same arguments plus --upgrade) READY=1; A exits 0 and B serves
    and sends STOPPING=1 on SIGTERM. Returns B's ids (_ids) seen while it served."""
    ns = NotifySocket(env, name)
    cfg = env.config(dict({"workers": 1}, **overrides))
    a = _start(env, name, cfg, environ={"NOTIFY_SOCKET": ns.path}, binary=binary)
    bpid = None
    try:
        if prepare:
            prepare(a)
        ino = replace() if replace else None
        pid, m = ns.next_from()
        eq((pid, m.get("READY")), (a.pid, "1"), "A's first notification %r" % m)
        os.kill(a.pid, signal.SIGUSR2)
        pid, m = ns.next_from(30)
        check(m.get("MAINPID", "").isdigit(), "no MAINPID= after SIGUSR2: %r; log: %s"
              % (m, a.log_tail(6, joined=True)))
        bpid = int(m["MAINPID"])
        eq(pid, a.pid, "the sender of MAINPID=%d" % bpid)
        check(bpid != a.pid, "MAINPID= is A's own pid")
        if ino is not None:
            eq(os.stat("/proc/%d/exe" % bpid).st_ino, ino, "B's executable (the replaced file)")
        check(_log_has(a, "SIGUSR2: started pid %d (" % bpid), "A did not start pid %d: %s"
              % (bpid, a.log_tail(6, joined=True)))
        with open("/proc/%d/cmdline" % bpid) as f:
            eq(f.read().split("\0")[1:-1], ["-c", a.config_path, "--upgrade"], "B's arguments")
        pid, m = ns.next_from(30)
        eq((pid, m.get("READY")), (bpid, "1"), "B's notification %r" % m)
        eq(a.proc.wait(timeout=20 * TIME_FACTOR), 0, "A's exit status after the handover")
        with env.connect(a.port) as c:
            upstream_info(c.request("GET", "/api/after-sigusr2"), "request to B")
        ids = _ids(bpid)
        os.kill(bpid, signal.SIGTERM)
        pid, m = ns.next_from(20)
        eq((pid, m.get("STOPPING")), (bpid, "1"), "B's notification on SIGTERM %r" % m)
        check(wait_until(lambda: _gone(bpid), 20), "B did not exit")
        bpid = None
        return ids, a
    finally:
        if bpid is not None and not _gone(bpid):
            os.kill(bpid, signal.SIGKILL)
        a.stop()
        ns.close()


@test("SIGUSR2: the gateway runs its own binary (the file now at its path) with the same "
      "arguments plus --upgrade as its child; it sends MAINPID=<child> once the child is ready, the child READY=1, the old one "
      "exits 0 and the child serves", timeout=120)
def _(env):
    d = os.path.join(env.tmp, "usr2-bin")
    os.makedirs(d, exist_ok=True)
    exe = os.path.join(d, "portcullis")
    shutil.copy(BINARY, exe)

    def replace():   # a new binary moved into place, as an install does
        shutil.copy(BINARY, exe + ".new")
        os.rename(exe + ".new", exe)
        return os.stat(exe).st_ino
    ids, a = _sigusr2_handover(env, "usr2", {}, binary=exe, replace=replace)
    check(_log_has(a, "SIGUSR2: started pid"), "no line about the start: %s" % a.log_tail(6, joined=True))


@test("SIGUSR2 with user: nobody: the child runs as nobody (as its dropped parent) and takes "
      "over from it", timeout=120)
def _(env):
    _need_root()
    with _nobody_reads(env, "usr2") as (_d, tls):   # and reaches the notification socket

        def readable(a):
            os.chmod(a.config_path, 0o644)   # nobody reads the configuration file itself
        ids, a = _sigusr2_handover(env, "usr2-nobody", {"user": "nobody", "tls": tls}, readable)
        for t in ids:
            eq(t["Uid"], ["65534"] * 4, "B's uids")


@test("SIGUSR2: a child that cannot take over (its configuration is now invalid) leaves the "
      "old process serving, logged, with no notification from the child", timeout=90)
def _(env):
    ns = NotifySocket(env, "usr2-fail")
    cfg = env.config({"workers": 1})
    a = _start(env, "usr2-fail", cfg, environ={"NOTIFY_SOCKET": ns.path})
    try:
        eq(ns.next_from(), (a.pid, {"READY": "1", "STATUS": "serving, configuration generation 1"}),
           "A's first notification")
        with open(a.config_path, "a") as f:
            f.write("no_such_key: 1\n")
        os.kill(a.pid, signal.SIGUSR2)
        check(wait_until(lambda: _log_has(a, "(started on SIGUSR2) ended (exit status 2) without "
                                             "taking over; this process keeps serving"), 20),
              "no line about the failed child: %s" % a.log_tail(6, joined=True))
        eq(ns.quiet(1.0), [], "notifications")
        check(a.alive(), "A exited")
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/api/after-failed-usr2"), "A still serves")
    finally:
        a.stop()
        ns.close()


_HELLO = b"PCUG\x01\x01\x00\x0c" + struct.pack(">I", 4242)

_PEER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
s.connect(sys.argv[1].replace("@", "\\0", 1))
try:
    s.send(bytes.fromhex(sys.argv[2]))
except OSError:
    pass   # refused at once: the answer is queued still
d = s.recv(4096)
print(d[5], d[10:].decode(errors="replace"))   # ERROR: u16 length, then the text
"""


@test("upgrade socket: a gateway that dropped from root to nobody refuses another process "
      "running as nobody (HELLO answered ERROR, no socket handed over), logs it once, and keeps "
      "serving; a root peer is still served", timeout=60)
def _(env):
    _need_root()
    usock = "@portcullis-test-peer-%d" % os.getpid()
    cfg = env.config({"workers": 1, "user": "nobody", "upgrade_socket": usock})
    a = _start(env, "peer-nobody", cfg)
    try:
        check(wait_until(lambda: _log_has(a, "running as user nobody"), 5), "A did not drop")
        check(_log_has(a, "user: nobody (uid 65534) is shared by other daemons"),
              "no warning about user: nobody: %s" % a.log_tail(6, joined=True))

        def as_nobody():
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
        for i in range(2):
            r = subprocess.run(["/usr/bin/python3", "-c", _PEER, usock, _HELLO.hex()],
                               capture_output=True, text=True, timeout=20, cwd="/",
                               preexec_fn=as_nobody)
            eq((r.returncode, r.stdout.strip()),
               (0, "6 refused: not the process this gateway started"),
               "answer %d to a HELLO from a nobody process (stderr %r)" % (i, r.stderr))
        refused = [ln for ln in a.log_tail(100000) if "upgrade: refused a peer on %s" % usock in ln]
        eq(len(refused), 1, "WARN lines about refused peers (rate-limited)")
        check("uid 65534): only root, or the process this gateway started on SIGUSR2, may take "
              "over" in refused[0], "the line does not say who may: %s" % refused[0])
        check(a.alive(), "A exited")
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/api/after-refused-peer"), "A still serves")
        # root is served: HELLO gets the first LISTENER (type 2)
        r = subprocess.run(["/usr/bin/python3", "-c", _PEER, usock, _HELLO.hex()],
                           capture_output=True, text=True, timeout=20)
        eq(r.stdout.split(" ", 1)[0], "2", "the answer to root's HELLO (%r)" % r.stderr)
        check(a.alive(), "A exited after root's unfinished handover")
    finally:
        a.stop()


@test("sd_notify: a new process that gives up the takeover (SIGTERM during the handover) sends "
      "no notification at all, STOPPING=1 neither", timeout=90)
def _(env):
    ns = NotifySocket(env, "abort")
    cfg = env.config({"workers": 1})
    a = _start(env, "abort-a", cfg, environ={"NOTIFY_SOCKET": ns.path})
    b = None
    try:
        eq(ns.next_from()[0], a.pid, "the sender of A's READY=1")
        # B's Redis is unreachable for a while: its mirror wait holds it after the handover
        cfg_b = dict(cfg, redis=dict(cfg["redis"], address="127.0.0.1:%d" % free_port(),
                                     connect_timeout="2s", command_timeout="2s"))
        b = Gateway(env, "abort-b", cfg_b, {"NOTIFY_SOCKET": ns.path})
        _popen(env, b, _preexec(), args=["--upgrade"], environ={"NOTIFY_SOCKET": ns.path})
        check(wait_log(b, "upgrade: received", 10), "B got no sockets: %s" % b.log_tail(8, joined=True))
        time.sleep(0.3)
        os.kill(b.pid, signal.SIGTERM)
        eq(b.proc.wait(timeout=30 * TIME_FACTOR), 1, "B's exit status")
        b.expect_exit = True
        eq([p for p, _ in ns.quiet(1.0) if p == b.proc.pid], [], "notifications from B")
        check(a.alive(), "A exited")
    finally:
        if b is not None:
            b.stop(grace=2)
        a.stop()
        ns.close()


@test("group: root (gid 0) with a non-root user is a configuration error (file:line:col)")
def _(env):
    cfg = env.config({"workers": 1, "user": "nobody", "group": "root"})
    gw = Gateway(env, "gid0", cfg)
    r = subprocess.run([BINARY, "--check", "-c", gw.config_path], capture_output=True,
                       text=True, timeout=20)
    with open(gw.config_path) as f:
        line = [i for i, ln in enumerate(f, 1) if ln.startswith("group:")][0]
    eq((r.returncode, r.stdout + r.stderr),
       (2, '%s:%d:8: group: group resolves to gid 0 (root\'s group) for the non-root user "nobody": '
           'name a group of its own\n' % (gw.config_path, line)), "--check")
