"""Background load for tests that change a running gateway (live reload):
build/portcullis-bench in `full` mode (a new handshake per request) and in
`keepalive` mode at the same time, against an upstream of its own so that
env.upstream_count() keeps counting only the test's own requests; and the
helpers to reload a gateway (POST /admin/reload or SIGHUP) and to read its
/admin/health. Not a test module (the runner loads test_*.py only)."""

import atexit
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from harness import (REPO, TIME_FACTOR, SetupError, check, eq, fail, free_port,
                     kill_group, short, spawn, to_yaml, wait_tcp)
from testkit import admin_request, wait_until

BENCH = os.path.abspath(os.environ.get("PORTCULLIS_BENCH_BIN",
                                       os.path.join(REPO, "build", "portcullis-bench")))
UPSTREAM = os.path.join(REPO, "test", "upstream.py")
ADMIN_TOKEN = "reload-admin-token-0123456789abcdef"

# Request rates (per second, open loop) and connections of each mode. Open
# loop keeps the cost bounded on a shared machine; a sanitizer build is
# slower, so it gets less.
RATES = {"full": 40 // TIME_FACTOR, "keepalive": 150 // TIME_FACTOR, "resume": 40 // TIME_FACTOR}
CONNS = {"full": 4, "keepalive": 4, "resume": 4}


# ---------------------------------------------------------------------------
# The load upstream: a second echo server, started once per run

_load_upstream = {}


def load_upstream(env):
    """The port of an echo upstream (test/upstream.py) that only the load
    uses, started on first use and stopped at exit."""
    if "port" in _load_upstream and _load_upstream["proc"].poll() is None:
        return _load_upstream["port"]
    log = open(os.path.join(env.tmp, "load-upstream.log"), "ab")
    proc = spawn([sys.executable, UPSTREAM, "--port", "0"], stdout=subprocess.PIPE, stderr=log)
    log.close()
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline().decode() if ready else ""
    m = re.match(r"PORT (\d+)", line)
    if not m:
        kill_group(proc, 1)
        raise SetupError("load upstream did not report its port (got %r)" % line)
    port = int(m.group(1))
    wait_tcp(port, proc, 5, "load upstream")
    _load_upstream.update(port=port, proc=proc)
    atexit.register(kill_group, proc, 2)
    return port


def load_upstream_config(env):
    """The `upstreams` entry named "load" for the load upstream."""
    return {"name": "load", "servers": ["127.0.0.1:%d" % load_upstream(env)],
            "connect_timeout": "1s", "response_timeout": "10s", "fail_timeout": "1s",
            "keepalive": 16, "keepalive_timeout": "30s"}


# ---------------------------------------------------------------------------
# The load driver

class Load:
    """portcullis-bench processes, one per mode, running until stop().

    port: the gateway's listener; path: the request target (a route to the
    load upstream); cert: a gen-pki client certificate name, or a
    (crt, key) pair; bearer: the Authorization token, if the route needs
    one. Each bench verifies the server against the PKI's server CA, so a
    replaced server certificate must still chain to it. Every mode runs
    open loop at rates[mode] requests/s over conns[mode] connections,
    except the modes in closed_loop (each connection sends its next request
    as soon as a response is complete: as fast as the gateway goes)."""

    def __init__(self, env, port, path="/load/", cert="device", bearer=None,
                 modes=("full", "keepalive"), rates=None, conns=None, resume_kind="tls13",
                 closed_loop=()):
        if not os.access(BENCH, os.X_OK):
            raise SetupError("bench tool %s not built (make build/portcullis-bench)" % BENCH)
        self.env, self.port, self.path = env, port, path
        self.crt, self.key = (cert if isinstance(cert, tuple)
                              else (env.pki(cert + ".crt"), env.pki(cert + ".key")))
        self.bearer = bearer
        self.modes = tuple(modes)
        self.rates = dict(RATES, **(rates or {}))
        self.conns = dict(CONNS, **(conns or {}))
        self.resume_kind = resume_kind
        self.closed_loop = set(closed_loop)
        self.procs = {}
        self.reports = None

    def _cmd(self, mode):
        cmd = [BENCH, "--json", "--mode", mode, "-c", str(self.conns[mode]), "-t", "1",
               "-d", "600s", "--timeout", "%ds" % (5 * TIME_FACTOR),
               "--cert", self.crt, "--key", self.key, "--cacert", self.env.pki("server-ca.crt")]
        if mode not in self.closed_loop:
            cmd += ["--rate", str(max(1, self.rates[mode]))]
        if mode == "resume":
            cmd += ["--resume-kind", self.resume_kind]
        if self.bearer:
            cmd += ["-H", "Authorization: Bearer %s" % self.bearer]
        return cmd + ["https://127.0.0.1:%d%s" % (self.port, self.path)]

    def start(self, settle=0.5):
        """Starts every mode; returns once each has run `settle` seconds."""
        for mode in self.modes:
            err = open(os.path.join(self.env.tmp, "bench-%s-%d.err" % (mode, self.port)), "ab")
            self.procs[mode] = spawn(self._cmd(mode), stdout=subprocess.PIPE, stderr=err)
            err.close()
        time.sleep(settle * TIME_FACTOR)
        for mode, p in self.procs.items():
            if p.poll() is not None:
                out = p.stdout.read().decode("utf-8", "replace")
                raise SetupError("bench (%s) exited with status %s at start: %s"
                                 % (mode, p.returncode, short(out)))
        return self

    def stop(self):
        """Stops every bench (SIGINT: the report is still printed) and returns
        {mode: parsed --json report}. Idempotent."""
        if self.reports is not None:
            return self.reports
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        reports, problems = {}, []
        for mode, p in self.procs.items():
            try:
                out, _ = p.communicate(timeout=15 * TIME_FACTOR)
            except subprocess.TimeoutExpired:
                kill_group(p, 1)
                problems.append("bench (%s) did not stop after SIGINT" % mode)
                continue
            if p.returncode not in (0, 130):
                problems.append("bench (%s) exited with status %d: %s"
                                % (mode, p.returncode, short(out)))
                continue
            try:
                reports[mode] = json.loads(out.decode("utf-8"))
            except ValueError:
                problems.append("bench (%s) report is not JSON: %s" % (mode, short(out)))
        self.reports = reports
        if problems:
            fail("; ".join(problems))
        return reports

    def kill(self):
        """Stops without a report (cleanup after a failure)."""
        for p in self.procs.values():
            kill_group(p, 2, signal.SIGINT)
            if p.stdout:
                p.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.reports is None:
            self.kill()


def check_clean(reports, what="load", min_requests=1):
    """Every bench report shows requests, no failed request and no refused
    connection; a full-mode run made full handshakes, a resume-mode run
    resumed. Returns the reports."""
    check(reports, "%s: no bench report" % what)
    for mode, r in sorted(reports.items()):
        errs = r.get("errors", {})
        detail = "%s (%s): errors %s, alerts %s, samples %s" % (
            what, mode, json.dumps(errs), json.dumps(r.get("tls_alerts")),
            json.dumps(r.get("error_samples")))
        eq(errs.get("connect"), 0, "%s: refused connections" % detail)
        eq(r.get("errors_total"), 0, "%s: failed requests" % detail)
        check(r.get("requests", 0) >= min_requests, "%s (%s): %s requests, expected at least %d"
              % (what, mode, r.get("requests"), min_requests))
        if mode == "full":
            check(r.get("handshakes_full", 0) >= min_requests,
                  "%s (full): %s full handshakes" % (what, r.get("handshakes_full")))
        if mode == "resume":
            check(r.get("handshakes_resumed", 0) > 0,
                  "%s (resume): no handshake resumed: %s" % (what, json.dumps(r)))
    return reports


# ---------------------------------------------------------------------------
# A gateway with an admin listener, reloaded through it or by SIGHUP

class ReloadGateway:
    """A private gateway (env.start_gateway) with an `admin` section on a
    free port and the admin token in its environment."""

    def __init__(self, env, name, cfg):
        self.env, self.name = env, name
        self.admin_port = free_port()
        cfg = dict(cfg)
        cfg["admin"] = dict(cfg.get("admin") or {}, listen="127.0.0.1:%d" % self.admin_port)
        self.cfg = cfg
        self.gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
        try:
            wait_tcp(self.admin_port, self.gw.proc, 10 * TIME_FACTOR, "admin listener")
        except BaseException:
            self.gw.stop(grace=2)
            raise

    @property
    def port(self):
        return self.gw.port

    @property
    def pid(self):
        return self.gw.pid

    @property
    def config_path(self):
        return self.gw.config_path

    def stop(self, grace=10.0):
        return self.gw.stop(grace)

    # -- the config file --------------------------------------------------

    def write_config(self, cfg=None, text=None):
        """Replaces the config file (atomically: a new file renamed over it)
        with cfg (a dict; the admin section is kept) or with raw text."""
        if text is None:
            cfg = dict(cfg)
            cfg["admin"] = self.cfg["admin"]
            text = to_yaml(cfg)
            self.cfg = cfg
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        return text

    # -- the admin API ----------------------------------------------------

    def admin(self, method, path, body=None):
        return admin_request(self.admin_port, ADMIN_TOKEN, method, path, body)

    def reload(self, cfg=None, text=None):
        """Writes cfg/text (if given), then POST /admin/reload: (status, body)."""
        if cfg is not None or text is not None:
            self.write_config(cfg, text)
        return self.admin("POST", "/admin/reload")

    def reload_ok(self, cfg=None, text=None, what="reload"):
        """reload() that must answer 200 with the next generation: the body."""
        before = self.runtime()["generation"]
        status, doc = self.reload(cfg, text)
        check(status == 200, "%s: POST /admin/reload answered %d: %s"
              % (what, status, short(json.dumps(doc), 600)))
        eq(doc.get("generation"), before + 1, "%s: generation after the reload" % what)
        return doc

    def health(self):
        status, doc = self.admin("GET", "/admin/health")
        eq(status, 200, "GET /admin/health status")
        return doc

    def runtime(self):
        doc = self.health()
        rt = doc.get("runtime") if isinstance(doc, dict) else None
        check(isinstance(rt, dict), "GET /admin/health has no runtime object: %s"
              % short(json.dumps(doc), 400))
        return rt

    def wait_generations_live(self, n, timeout=5.0):
        """Waits until runtime.generations_live == n; True if it did."""
        return wait_until(lambda: self.runtime().get("generations_live") == n,
                          timeout * TIME_FACTOR)

    # -- SIGHUP and the log -----------------------------------------------

    def log_text(self):
        self.gw.settle_log()
        with open(self.gw.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_size(self):
        self.gw.settle_log()
        return os.path.getsize(self.gw.log_path)

    def log_since(self, offset, settle=True):
        if settle:
            self.gw.settle_log()
        with open(self.gw.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, offset=0, timeout=3.0):
        """The first log line after byte offset matching the regex pattern
        (within timeout seconds), or None."""
        rx = re.compile(pattern)
        found = []

        def look():
            for line in self.log_since(offset, settle=False).splitlines():
                if rx.search(line):
                    found.append(line)
                    return True
            return False

        wait_until(look, timeout * TIME_FACTOR)
        return found[0] if found else None

    def sighup(self, cfg=None, text=None, timeout=5.0):
        """Writes cfg/text (if given), sends SIGHUP and waits for the reload's
        log line ("reload: generation N applied ..." or "reload: refused
        ..."). Returns (line, log text after it was sent)."""
        if cfg is not None or text is not None:
            self.write_config(cfg, text)
        off = self.log_size()
        os.kill(self.pid, signal.SIGHUP)
        line = self.wait_log(r"reload: (generation \d+ applied|refused)", off, timeout)
        if line is None:
            fail("no reload log line within %.0fs of SIGHUP; log: %s"
                 % (timeout, short(self.log_since(off), 600)))
        time.sleep(0.1)   # the lines that follow a refusal
        return line, self.log_since(off)


# ---------------------------------------------------------------------------
# The process, seen from /proc

def proc_fds(pid):
    """Open file descriptors of pid."""
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kb(pid):
    """VmRSS of pid in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail("no VmRSS in /proc/%d/status" % pid)
