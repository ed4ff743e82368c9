"""Binary upgrade with the admin and metrics listeners: their sockets are
handed over like the client listeners, so an upgrade on the SAME
configuration works, /metrics and /readyz answer throughout, and a second
gateway started without --upgrade on those addresses is still refused
(gateway/upgrade.h, docs/operations.md)."""

import json
import os
import socket
import subprocess
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import (BINARY, TIME_FACTOR, Gateway, check, eq, fail, free_port, spawn,
                     test, to_yaml, upstream_info)
from testkit import wait_until
from upgradekit import Load, failures, wait_log

ADMIN_TOKEN = "upgrade-admin-token-0123456789abcdef"
ENVIRON = {"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN}
READY = (200, {"status": "ready"})
DRAINING = (503, {"status": "not_ready", "reasons": ["draining"]})


def config(env, extra=None):
    """A configuration with a metrics and an admin listener."""
    over = {"metrics": {"address": "127.0.0.1:%d" % free_port()},
            "admin": {"listen": "127.0.0.1:%d" % free_port()},
            "timeouts": {"drain": "10s", "drain_idle": "5s"}}
    over.update(extra or {})
    return env.config(over)


def mport(cfg):
    return int(cfg["metrics"]["address"].rsplit(":", 1)[1])


def aport(cfg):
    return int(cfg["admin"]["listen"].rsplit(":", 1)[1])


def start(env, name, cfg, upgrade=False):
    """The gateway with the admin token in its environment; with upgrade,
    started with --upgrade (returns at once: the caller waits)."""
    gw = Gateway(env, name, cfg, ENVIRON)
    if not upgrade:
        return gw.start()
    log = open(gw.log_path, "ab")
    try:
        gw.proc = spawn([BINARY, "-c", gw.config_path, "--upgrade"], cwd=env.tmp, stdout=log,
                        stderr=log, env=dict(os.environ, **ENVIRON))
    finally:
        log.close()
    return gw


def run_plain(env, name, cfg):
    """A start without --upgrade run to its end: (exit status, output)."""
    path = os.path.join(env.tmp, "gw-%s.yaml" % name)
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    r = subprocess.run([BINARY, "-c", path], capture_output=True, text=True,
                       timeout=15 * TIME_FACTOR, env=dict(os.environ, **ENVIRON))
    return r.returncode, r.stdout + r.stderr


def exchange(s, path, token=None):
    """One HTTP/1.1 request on socket s: (status, headers lower-case, body)."""
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, auth)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the response head")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed in the body")
        body += d
    return int(lines[0].split()[1]), headers, body[:n]


def get(port, path, token=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5 * TIME_FACTOR) as s:
        return exchange(s, path, token)


def readyz(port):
    status, headers, body = get(port, "/readyz")
    return status, json.loads(body), headers


def scrape_ok(port, token=None, path="/metrics"):
    """GET /metrics answers 200 with an exposition the Prometheus parser reads."""
    status, _, body = get(port, path, token)
    eq(status, 200, "GET %s on %d" % (path, port))
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    check("portcullis_connections_open" in names, "exposition lacks the gauges: %s"
          % sorted(names)[:10])


class Probes:
    """Fresh-connection probes of /metrics and /readyz on both listeners, in
    a thread, until stopped: every answer, or the error instead."""

    def __init__(self, cfg):
        self.targets = [(mport(cfg), "/metrics", None), (mport(cfg), "/readyz", None),
                        (aport(cfg), "/readyz", None), (aport(cfg), "/metrics", ADMIN_TOKEN)]
        self.results = {t[:2]: [] for t in self.targets}
        self.errors = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            for port, path, token in self.targets:
                try:
                    status, headers, body = get(port, path, token)
                    if path == "/metrics":
                        list(text_string_to_metric_families(body.decode()))
                        value = None
                    else:
                        value = json.loads(body)
                    self.results[(port, path)].append((status, value, headers.get("connection")))
                except Exception as e:   # noqa: BLE001 - every failure is reported
                    self.errors.append("%s %d: %r" % (path, port, e))
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        self.thread.join(10)

    def check(self):
        eq(self.errors, [], "probes that got no answer")
        for (port, path), got in self.results.items():
            check(len(got) > 20, "only %d probes of %s on %d" % (len(got), path, port))
            if path == "/metrics":
                eq({s for s, _, _ in got}, {200}, "statuses of %s on %d" % (path, port))
                continue
            # a probe the old process accepted just before the handover may be
            # answered once its drain began: draining, with Connection: close;
            # one at most, the probes being sequential
            late = [r for r in got if (r[0], r[1]) != READY]
            check(len(late) <= 1, "answers of %s on %d other than ready: %r" % (path, port, late))
            for r in late:
                eq((r[0], r[1], r[2]), DRAINING + ("close",), "the old process's late answer")


@test("upgrade with admin and metrics listeners on the same configuration: 0 failed client "
      "requests under load, /metrics and /readyz answer throughout, then from the new process",
      timeout=150)
def _(env):
    cfg = config(env)
    a = start(env, "ul-a", cfg)
    gws = [a]
    try:
        scrape_ok(mport(cfg))
        with env.connect(a) as idle:   # keeps A draining for drain_idle after the handover
            upstream_info(idle.request("GET", "/before-upgrade"), "A before the upgrade")
            # a keep-alive scrape connection to A, opened before the upgrade
            keep = socket.create_connection(("127.0.0.1", mport(cfg)), timeout=5 * TIME_FACTOR)
            eq(exchange(keep, "/readyz")[0], 200, "/readyz on the kept connection before")
            probes = Probes(cfg)
            loads = [Load(env, a.port, "full", 4, 4.0, "ul"),
                     Load(env, a.port, "keepalive", 4, 4.0, "ul")]
            try:
                time.sleep(1.0)
                # A's drain keeps it open until it has been idle for drain_idle
                upstream_info(idle.request("GET", "/just-before-upgrade"), "A before the upgrade")
                b = start(env, "ul-b", cfg, upgrade=True)
                gws.append(b)
                check(wait_log(b, "upgrade: the old process confirmed", 15),
                      "B did not take over: %s" % b.log_tail(10, joined=True))
                check(wait_log(a, "SIGTERM: draining", 5), "A does not drain: %s"
                      % a.log_tail(6, joined=True))
                # A still runs (the idle connection), the kept connection still reaches it:
                # it answers as a draining process, and closes that connection
                check(a.alive(), "A exited before drain_idle")
                status, headers, body = exchange(keep, "/readyz")
                eq((status, json.loads(body), headers.get("connection")), DRAINING + ("close",),
                   "A's answer on the connection kept from before the upgrade")
                eq(keep.recv(100), b"", "A left the kept connection open")
                reports = {ld.mode: ld.result(30 * TIME_FACTOR) for ld in loads}
                eq(a.proc.wait(timeout=15 * TIME_FACTOR), 0, "A's exit status")
                a.expect_exit = True
                time.sleep(0.3)   # probes after A's exit
            finally:
                probes.stop()
                for ld in loads:
                    ld.stop()
                keep.close()
        for mode, rep in reports.items():
            eq(failures(rep), {}, "%s: failed connections or requests (%s)"
               % (mode, rep.get("error_samples")))
            eq(rep["errors"]["http_status"], {}, "%s: error statuses" % mode)
            check(rep["requests"] > 50, "%s: only %d requests ran" % (mode, rep["requests"]))
        probes.check()
        for what in ("admin listener %s" % cfg["admin"]["listen"],
                     "metrics listener %s" % cfg["metrics"]["address"]):
            check(wait_log(b, "upgrade: took over the " + what, 1), "B did not log it took over "
                  "the %s: %s" % (what, b.log_tail(10, joined=True)))
        check(wait_log(b, "upgrade: received 2 listening sockets from pid %d (2 on this "
                       "configuration's listeners)" % a.pid, 1), "B's count of client sockets")
        # only B is left, on the same addresses
        for port in (mport(cfg), aport(cfg)):
            eq(readyz(port)[:2], READY, "/readyz on %d after A exited" % port)
        scrape_ok(mport(cfg))
        scrape_ok(aport(cfg), ADMIN_TOKEN)
        status, _, body = get(aport(cfg), "/admin/health", ADMIN_TOKEN)
        eq(status, 200, "GET /admin/health on B")
        # and B hands them over in turn
        c = start(env, "ul-c", cfg, upgrade=True)
        gws.append(c)
        check(wait_log(c, "upgrade: took over the metrics listener", 15) and
              wait_log(c, "upgrade: took over the admin listener", 1),
              "C did not take the listeners over: %s" % c.log_tail(10, joined=True))
        eq(b.proc.wait(timeout=15 * TIME_FACTOR), 0, "B's exit status")
        b.expect_exit = True
        for port in (mport(cfg), aport(cfg)):
            eq(readyz(port)[:2], READY, "/readyz on %d from C" % port)
        scrape_ok(mport(cfg))
        with env.connect(c) as conn:
            upstream_info(conn.request("GET", "/after-two-upgrades"), "C serves")
    finally:
        for gw in gws:
            gw.stop(grace=5)


@test("upgrade listeners: a second gateway without --upgrade on the same admin or metrics "
      "address is refused (exit 1), and the first keeps serving them", timeout=60)
def _(env):
    cfg = config(env)
    a = start(env, "ul-second-a", cfg)
    try:
        rc, out = run_plain(env, "ul-second-b", cfg)
        eq(rc, 1, "exit status on the same configuration (output: %s)" % out.strip())
        check("listen on %s: another process is already listening there (a second gateway?)"
              % cfg["listeners"][0]["address"] in out, "message: %s" % out.strip())
        for key, sect, what in (("listen", "admin", "admin listener not started: cannot listen "
                                 "on %s (admin.listen): Address already in use"),
                                ("address", "metrics", "metrics listener not started: cannot "
                                 "listen on %s (metrics.address): Address already in use")):
            other = dict(cfg, listeners=[{"address": "127.0.0.1:%d" % free_port()}])
            if sect == "admin":
                other["metrics"] = {"address": "127.0.0.1:%d" % free_port()}
            else:
                other["admin"] = {"listen": "127.0.0.1:%d" % free_port()}
            rc, out = run_plain(env, "ul-second-" + sect, other)
            eq(rc, 1, "exit status with only %s.%s held (output: %s)" % (sect, key, out.strip()))
            check(what % cfg[sect][key] in out, "message: %s" % out.strip())
        for port in (mport(cfg), aport(cfg)):
            eq(readyz(port)[:2], READY, "/readyz on %d of the first gateway" % port)
        scrape_ok(mport(cfg))
        check(a.alive(), "the first gateway exited")
    finally:
        eq(a.stop(), 0, "exit status of the first gateway")


@test("upgrade listeners: a new configuration with other admin and metrics addresses: the old "
      "sockets are closed with the old process, the new ones bound", timeout=60)
def _(env):
    cfg = config(env)
    a = start(env, "ul-move-a", cfg)
    gws = [a]
    try:
        new = dict(cfg, metrics={"address": "127.0.0.1:%d" % free_port()},
                   admin={"listen": "127.0.0.1:%d" % free_port()})
        b = start(env, "ul-move-b", new, upgrade=True)
        gws.append(b)
        check(wait_log(b, "upgrade: the old process confirmed", 15),
              "B did not take over: %s" % b.log_tail(10, joined=True))
        for sect, key in (("admin", "listen"), ("metrics", "address")):
            check(wait_log(b, "upgrade: the %s listener %s of the running gateway: its address "
                           "is neither admin.listen nor metrics.address here; closed"
                           % (sect, cfg[sect][key]), 1),
                  "B's log for the old %s socket: %s" % (sect, b.log_tail(10, joined=True)))
        eq(a.proc.wait(timeout=15 * TIME_FACTOR), 0, "A's exit status")
        a.expect_exit = True
        for port in (mport(new), aport(new)):
            eq(readyz(port)[:2], READY, "/readyz on the new address %d" % port)
        for port in (mport(cfg), aport(cfg)):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                fail("the old address %d still accepts" % port)
            except ConnectionRefusedError:
                pass
        check(wait_until(lambda: b.alive(), 1), "B exited")
    finally:
        for gw in gws:
            gw.stop(grace=5)


@test("upgrade listeners: a new process that does not take over (its mirror cannot load) never "
      "answers on the admin and metrics sockets it received; the old one keeps serving them",
      timeout=60)
def _(env):
    cfg = config(env)
    a = start(env, "ul-abort-a", cfg)
    cfg_b = dict(cfg, redis=dict(cfg["redis"], address="127.0.0.1:%d" % free_port(),
                                 connect_timeout="1s", command_timeout="1s"))
    b = start(env, "ul-abort-b", cfg_b, upgrade=True)
    try:
        check(wait_log(b, "upgrade: took over the metrics listener", 10) and
              wait_log(b, "upgrade: took over the admin listener", 1),
              "B did not receive the listeners: %s" % b.log_tail(10, joined=True))
        # B waits for its mirror now: it holds the sockets, but only A accepts on them
        answers = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and b.alive():
            for port in (mport(cfg), aport(cfg)):
                status, body, headers = readyz(port)
                answers.add((port, status, json.dumps(body), headers.get("connection")))
            time.sleep(0.02)
        eq(answers, {(p, 200, json.dumps(READY[1]), None) for p in (mport(cfg), aport(cfg))},
           "/readyz answers while B waits (B's would say starting)")
        eq(b.proc.wait(timeout=30 * TIME_FACTOR), 1, "B's exit status")
        b.expect_exit = True
        check(wait_log(b, "upgrade: the revocation mirror could not be loaded", 1),
              "B says why: %s" % b.log_tail(6, joined=True))
        check(a.alive(), "A exited")
        for port in (mport(cfg), aport(cfg)):
            eq(readyz(port)[:2], READY, "/readyz on %d from A after B gave up" % port)
        scrape_ok(mport(cfg))
        scrape_ok(aport(cfg), ADMIN_TOKEN)
    finally:
        a.stop(grace=2)
        b.stop(grace=2)
