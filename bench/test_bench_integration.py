#!/usr/bin/python3
"""End-to-end test of build/portcullis-bench against a real build/portcullis.

Starts, in a temporary directory: a throwaway PKI (scripts/gen-pki.sh), the
echo upstream (test/upstream.py), a redis-server and one gateway, then runs
the load generator briefly in each mode and checks its JSON report.

Run from the repository root:  python3 bench/test_bench_integration.py [-v]
Environment: PORTCULLIS_BIN (default build/portcullis),
             PORTCULLIS_BENCH_BIN (default build/portcullis-bench).
Prints "ok - ..." / "not ok - ..." lines and ends with "N passed, N failed".
Everything it starts is stopped on exit, also on failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.abspath(os.environ.get("PORTCULLIS_BIN", "build/portcullis"))
BENCH = os.path.abspath(os.environ.get("PORTCULLIS_BENCH_BIN", "build/portcullis-bench"))
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
VERBOSE = "-v" in sys.argv[1:]

passed = 0
failed = 0
procs = []


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - %s" % name)
    else:
        failed += 1
        print("not ok - %s%s" % (name, (" # " + detail) if detail else ""))
    sys.stdout.flush()
    return cond


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd, log_path, **kw):
    log = open(log_path, "ab")
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", log),
                             stderr=log, start_new_session=True, **kw)
    finally:
        log.close()
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                p.terminate()
    deadline = time.monotonic() + 5
    for p in reversed(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                p.kill()
            p.wait()
    procs.clear()


def wait_tcp(port, proc, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s is not listening on port %d" % (what, port))


def log_tail(path, n=10):
    try:
        with open(path, "rb") as f:
            return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


def gateway_config(tmp, pki, port, upstream_port, redis_port):
    def p(name):
        return os.path.join(pki, name)
    return """\
workers: 1
listeners:
  - address: 127.0.0.1:{port}
tls:
  certificates:
    - cert: {server_crt}
      key: {server_key}
  min_version: "1.2"
  handshake_timeout: 5s
  session_cache:
    size: 4096
    lifetime: 10m
  classes:
    - name: device
      ca: {device_ca}
    - name: bootstrap
      ca: {bootstrap_ca}
identity:
  device_id:
    source: san_uri
    prefix: "urn:portcullis:device:"
limits:
  max_connections: 1000
  max_header_bytes: 16k
  max_headers: 100
  max_body_bytes: 1m
timeouts:
  header_read: 10s
  body_read: 10s
  idle: 30s
  send: 10s
  drain: 2s
upstreams:
  - name: echo
    servers: [127.0.0.1:{upstream_port}]
    connect_timeout: 1s
    response_timeout: 10s
    fail_timeout: 1s
    keepalive: 16
    keepalive_timeout: 30s
routes:
  - path: /
    upstream: echo
    allow_classes: [device]
    require_bearer: true
redis:
  address: 127.0.0.1:{redis_port}
  db: 0
  connect_timeout: 1s
  command_timeout: 1s
logging:
  level: warn
  format: text
  access: false
""".format(port=port, server_crt=p("server.crt"), server_key=p("server.key"),
           device_ca=p("device-ca.crt"), bootstrap_ca=p("bootstrap-ca.crt"),
           upstream_port=upstream_port, redis_port=redis_port)


class Setup:
    def __init__(self, tmp):
        self.tmp = tmp
        self.pki = os.path.join(tmp, "pki")
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-pki.sh"), self.pki],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)
        with open(os.path.join(self.pki, "bearer.txt")) as f:
            self.bearer = f.read().strip()

        up_log = os.path.join(tmp, "upstream.log")
        up = spawn([PYTHON, os.path.join(ROOT, "test", "upstream.py"), "--port", "0"], up_log,
                   stdout=subprocess.PIPE)
        line = up.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            raise RuntimeError("upstream did not print its port (got %r)" % line)
        self.upstream_port = int(line.split()[1])

        redis = shutil.which("redis-server")
        if not redis:
            raise RuntimeError("redis-server not found")
        self.redis_port = free_port()
        rp = spawn([redis, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no"], os.path.join(tmp, "redis.log"))
        wait_tcp(self.redis_port, rp, "redis-server")

        self.port = free_port()
        cfg = os.path.join(tmp, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(gateway_config(tmp, self.pki, self.port, self.upstream_port,
                                   self.redis_port))
        self.gw_log = os.path.join(tmp, "gateway.log")
        self.gw = spawn([GATEWAY, "-c", cfg], self.gw_log, cwd=tmp)
        try:
            wait_tcp(self.port, self.gw, "gateway")
        except RuntimeError as e:
            raise RuntimeError("%s; log: %s" % (e, log_tail(self.gw_log)))
        self.url = "https://127.0.0.1:%d/bench" % self.port

    def cert_args(self, name="device"):
        return ["--cert", os.path.join(self.pki, name + ".crt"),
                "--key", os.path.join(self.pki, name + ".key")]

    def bearer_args(self):
        return ["-H", "Authorization: Bearer " + self.bearer]


def run_bench(args, timeout=30):
    """Runs the tool; returns (exit status, parsed JSON or None, stderr)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([BENCH] + args, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, "timed out after %ds" % timeout, timeout
    elapsed = time.monotonic() - t0
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if VERBOSE:
        sys.stderr.write("# %s\n# -> %d in %.2fs\n# %s\n# %s\n" % (
            " ".join(args), r.returncode, elapsed, out.strip(), err.strip()))
    report = None
    if "--json" in args and r.returncode == 0:
        try:
            report = json.loads(out)
        except ValueError:
            pass
    return r.returncode, report, err, elapsed


def errors_total(rep):
    n = 0
    for v in rep["errors"].values():
        n += sum(v.values()) if isinstance(v, dict) else v
    return n


def brief(rep):
    if rep is None:
        return "no report"
    keys = ("requests", "handshakes_full", "handshakes_resumed", "resumed_pct", "errors",
            "tls_alerts", "error_samples", "idle_connections_up")
    return json.dumps({k: rep[k] for k in keys if k in rep})


def tests(s):
    good = s.cert_args() + s.bearer_args()
    base = ["-d", "1s", "-c", "4", "--json", "--timeout", "5s"]

    for mode in ("keepalive", "full"):
        rc, rep, err, _ = run_bench(base + good + ["--mode", mode, s.url])
        check(rc == 0 and rep is not None and rep["requests"] > 0 and errors_total(rep) == 0
              and rep["errors_total"] == 0,
              "%s mode: requests > 0 and no errors" % mode, "rc=%s %s %s" % (rc, brief(rep), err))
        if mode == "full" and rep:
            check(rep["handshakes_full"] >= rep["requests"] and rep["handshakes_resumed"] == 0,
                  "full mode: one full handshake per request", brief(rep))
        if mode == "keepalive" and rep:
            check(rep["handshakes_full"] <= 4 + 0 and rep["requests"] > rep["handshakes_full"],
                  "keepalive mode: connections are reused", brief(rep))

    for kind in ("tls13", "tls12-id"):
        rc, rep, err, _ = run_bench(base + good + ["--mode", "resume", "--resume-kind", kind,
                                                   s.url])
        check(rc == 0 and rep is not None and rep["requests"] > 0 and errors_total(rep) == 0
              and rep["resumed_pct"] > 90,
              "resume mode %s: resumed_pct > 90 without errors" % kind,
              "rc=%s %s %s" % (rc, brief(rep), err))

    rc, rep, err, _ = run_bench(base + good + ["--tls", "1.2", s.url])
    check(rc == 0 and rep is not None and rep["requests"] > 0 and errors_total(rep) == 0,
          "keepalive over TLS 1.2: requests > 0 and no errors", "rc=%s %s" % (rc, brief(rep)))

    for mode in ("keepalive", "full"):
        rc, rep, err, _ = run_bench(base + s.cert_args("wrongca") + s.bearer_args()
                                    + ["--mode", mode, s.url])
        ok = (rc == 0 and rep is not None and rep["requests"] == 0 and errors_total(rep) > 0
              and errors_total(rep) == rep["errors"]["handshake"] + rep["errors"]["tls_alert"])
        check(ok, "wrong CA (%s): every attempt is a handshake or tls_alert error, no requests"
              % mode, "rc=%s %s %s" % (rc, brief(rep), err))
        if ok and rep["errors"]["tls_alert"]:
            check(len(rep["tls_alerts"]) > 0,
                  "wrong CA (%s): the alert descriptions are reported" % mode, brief(rep))

    rc, rep, err, _ = run_bench(base + s.cert_args() + [s.url])
    ok = (rc == 0 and rep is not None and rep["requests"] > 0
          and rep["errors"]["http_status"] == {"401": rep["requests"]}
          and errors_total(rep) == rep["requests"])
    check(ok, "no bearer: every response is counted under http_status 401",
          "rc=%s %s" % (rc, brief(rep)))

    rc, rep, err, elapsed = run_bench(["-d", "1s", "-c", "4", "--json", "--mode", "idle"]
                                      + s.cert_args() + [s.url])
    check(rc == 0 and rep is not None and rep.get("idle_connections_up") == 4
          and errors_total(rep) == 0,
          "idle mode: holds -c 4 connections up", "rc=%s %s %s" % (rc, brief(rep), err))
    check(elapsed < 5, "idle mode: ends after the duration", "%.1fs" % elapsed)

    # steady arrival: 4 connections at 4/s open over about 0.75 s; 8 at 4/s
    # with -d 0.5s: the run ends while most are still to come
    rc, rep, err, _ = run_bench(["-d", "2s", "-c", "4", "--rate", "4", "--json", "--mode", "idle"]
                                + s.cert_args() + [s.url])
    check(rc == 0 and rep is not None and rep.get("idle_connections_up") == 4
          and errors_total(rep) == 0,
          "idle mode with --rate: all connections up after the arrivals", "rc=%s %s %s"
          % (rc, brief(rep), err))
    rc, rep, err, _ = run_bench(["-d", "0.5s", "-c", "8", "--rate", "4", "--json", "--mode", "idle"]
                                + s.cert_args() + [s.url])
    check(rc == 0 and rep is not None and 1 <= rep.get("idle_connections_up", 0) <= 3,
          "idle mode with --rate: connections arrive over time, not at once", "rc=%s %s %s"
          % (rc, brief(rep), err))

    rc, rep, err, _ = run_bench(["-n", "50", "-c", "4", "-t", "2", "--json"] + good + [s.url])
    check(rc == 0 and rep is not None and rep["requests"] == 50 and errors_total(rep) == 0,
          "-n 50 with 2 threads: exactly 50 requests", "rc=%s %s" % (rc, brief(rep)))

    rc, rep, err, _ = run_bench(["-d", "1s", "-c", "4", "--rate", "200", "--json"] + good
                                + [s.url])
    check(rc == 0 and rep is not None and 150 <= rep["requests"] <= 210
          and errors_total(rep) == 0,
          "--rate 200 for 1s: about 200 requests", "rc=%s %s" % (rc, brief(rep)))

    rc, rep, err, _ = run_bench(["-d", "500ms", "-c", "2", "--warmup", "300ms", "-m", "POST",
                                 "--body-size", "1k", "--json"] + good + [s.url])
    check(rc == 0 and rep is not None and rep["requests"] > 0 and errors_total(rep) == 0
          and rep["bytes_written"] > 1024 * rep["requests"],
          "POST with --body-size 1k and --warmup", "rc=%s %s" % (rc, brief(rep)))

    # bad input
    missing = os.path.join(s.tmp, "no-such.crt")
    rc, _, err, _ = run_bench(["-d", "1s", "--cert", missing, "--key", missing, s.url])
    check(rc == 2 and missing in err, "unreadable certificate: exit 2 naming the file",
          "rc=%s %s" % (rc, err.strip()))
    rc, _, err, _ = run_bench(["-d", "1s", "http://127.0.0.1:%d/" % s.port])
    check(rc == 2 and "https" in err, "http:// URL: exit 2 with a reason", "rc=%s %s" % (rc, err))
    rc, _, err, _ = run_bench(["-d", "1s", "https://127.0.0.1/"])
    check(rc == 2 and "port" in err, "URL without a port: exit 2 with a reason",
          "rc=%s %s" % (rc, err))
    rc, _, err, _ = run_bench(["-d", "ten", s.url])
    check(rc == 2 and "duration" in err, "bad duration: exit 2", "rc=%s %s" % (rc, err))
    rc, _, err, _ = run_bench(["-c", "-3", s.url])
    check(rc == 2, "bad connection count: exit 2", "rc=%s %s" % (rc, err))
    dead = free_port()
    rc, _, err, elapsed = run_bench(["-d", "5s"] + good + ["https://127.0.0.1:%d/" % dead])
    check(rc == 1 and "refused" in err.lower() and elapsed < 3,
          "connection refused: exit 1 quickly with a clear message",
          "rc=%s %.1fs %s" % (rc, elapsed, err.strip()))

    check(s.gw.poll() is None, "the gateway is still running", log_tail(s.gw_log))


def main():
    for path, what in ((GATEWAY, "gateway"), (BENCH, "load generator")):
        if not os.access(path, os.X_OK):
            print("not ok - %s binary %s not found (build it first)" % (what, path))
            print("0 passed, 1 failed")
            return 1
    tmp = tempfile.mkdtemp(prefix="portcullis-bench-test.")
    try:
        try:
            s = Setup(tmp)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            check(False, "set up PKI, upstream, redis and gateway", str(e))
        else:
            check(True, "set up PKI, upstream, redis and gateway")
            tests(s)
    finally:
        stop_all()
        if failed and "--keep" in sys.argv[1:]:
            print("# kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
