"""Logging fixes (issue 13): SIGUSR1 never ends a process that is starting,
checking a file or running a CLI command; a reload opens an unchanged
logging.file again; a destination that fails every write loses no line
silently (each counted, one line says how many once writing works)."""

import json
import os
import signal
import socket
import subprocess
import time

from testkit import metric_value
from harness import (BINARY, TIME_FACTOR, Gateway, check, eq, fail, free_port, kill_group,
                     short, spawn, test, to_yaml, upstream_info, wait_tcp)

TOKEN = "logfix-admin-token-0123456789"
CONFIG_ERROR = "cannot open the configuration file: not a regular file"


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def _wait_text(path, needle, timeout=5.0):
    deadline = time.monotonic() + timeout * TIME_FACTOR
    while time.monotonic() < deadline:
        if any(needle in ln for ln in _lines(path)):
            return True
        time.sleep(0.05)
    return False


def _json_lines(path):
    out = []
    for ln in _lines(path):
        try:
            out.append(json.loads(ln))
        except ValueError:
            fail("log line is not JSON: %s" % short(ln, 300))
    return out


def _blocked_in_open(pid):
    """The process sleeps in open() of a FIFO nobody writes (waiting for a
    writer): it runs main() and reads its configuration."""
    try:
        with open("/proc/%d/wchan" % pid) as f:
            if f.read().strip() in ("wait_for_partner", "fifo_open"):
                return True
        with open("/proc/%d/syscall" % pid) as f:
            nr = f.read().split(" ", 1)[0]
        return nr in ("257", "56")   # openat on x86-64, on arm64
    except OSError:
        return False


def _signal_while_reading_config(env, name, argv):
    """Runs argv (its -c names a FIFO), sends SIGUSR1 three times while the
    process waits in open() of its configuration, then lets the open end
    (the FIFO is not a regular file, so loading fails): (returncode, stderr)."""
    fifo = os.path.join(env.tmp, "%s.yaml" % name)
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    argv = [a if a != "FIFO" else fifo for a in argv]
    proc = spawn([BINARY] + argv, cwd=env.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while not _blocked_in_open(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                fail("%s never waited in open() of its configuration (status %s)" % (name, proc.poll()))
            time.sleep(0.01)
        for _ in range(3):
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.05)
        time.sleep(0.2)
        check(proc.poll() is None, "%s: SIGUSR1 while reading the configuration ended the process "
              "(status %s)" % (name, proc.poll()))
        fd = os.open(fifo, os.O_WRONLY)   # the open in the process returns
        os.close(fd)
        out, err = proc.communicate(timeout=10 * TIME_FACTOR)
        return proc.returncode, err.decode("utf-8", "replace")
    finally:
        kill_group(proc, 1)


@test("SIGUSR1 while --check, a CLI command or a gateway's start reads the configuration does not end it")
def _(env):
    for name, argv, status in (("check", ["-c", "FIFO", "--check"], 2),
                               ("cli", ["revocations", "-c", "FIFO"], 2),
                               ("start", ["-c", "FIFO"], 2)):
        rc, err = _signal_while_reading_config(env, "usr1-" + name, argv)
        eq(rc, status, "%s: exit status after SIGUSR1 (stderr: %s)" % (name, short(err, 300)))
        check(CONFIG_ERROR in err, "%s: the configuration error is not on stderr: %s" % (name, short(err, 300)))


def _sigblk_usr1(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("SigBlk:"):
                    return int(ln.split()[1], 16) & (1 << (signal.SIGUSR1 - 1)) != 0
    except OSError:
        pass
    return False


@test("a gateway signalled SIGUSR1 again and again during its whole start survives, serves, and reopens its file")
def _(env):
    path = os.path.join(env.tmp, "usr1-start.log")
    cfg = env.config({"logging": {"format": "json", "file": path}})
    gw = Gateway(env, "usr1-start", cfg)
    log = open(gw.log_path, "ab")
    try:
        gw.proc = spawn([BINARY, "-c", gw.config_path], cwd=env.tmp, stdout=log, stderr=log)
    finally:
        log.close()
    try:
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while not _sigblk_usr1(gw.pid):   # main() runs: from here a signal may come at any time
            if gw.proc.poll() is not None or time.monotonic() > deadline:
                fail("the gateway never blocked SIGUSR1 (status %s)" % gw.proc.poll())
        sent = 0
        while True:
            for _ in range(3):   # a burst before each probe: a fast start still gets several
                os.kill(gw.pid, signal.SIGUSR1)
                sent += 1
            if gw.proc.poll() is not None:
                fail("the gateway ended after %d SIGUSR1 during its start (status %s): %s"
                     % (sent, gw.proc.returncode, gw.log_tail(5, joined=True)))
            try:
                socket.create_connection(("127.0.0.1", gw.port), timeout=0.2).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                fail("the gateway did not listen: %s" % gw.log_tail(5, joined=True))
            time.sleep(0.0005)
        check(sent >= 3, "only %d signal(s) sent before it listened" % sent)
        with env.connect(gw) as c:
            r = c.request("GET", "/api/after-signals")
        eq(r.status, 200, "a request after the signals")
        upstream_info(r)
        check(_wait_text(path, "log_reopened"), "no log_reopened line in %s" % path)
        check(gw.alive(), "the gateway ended")
        gw.settle_log()
        _json_lines(path)   # every line in the file parses
    finally:
        gw.stop()


@test("a reload with an unchanged logging.file opens it again by its name (after a manual rotation)")
def _(env):
    path = os.path.join(env.tmp, "reload-same.log")
    gw = env.start_gateway("reload-same", env.config({"logging": {"format": "json", "file": path}}))
    try:
        check(_wait_text(path, "listening on"), "no listening line in the log file")
        os.rename(path, path + ".1")
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(path, "generation 2 applied"), "the reload's line is not in a new file at the "
              "name: %s" % _lines(path + ".1")[-2:])
        with env.connect(gw) as c:
            r = c.request("GET", "/api/after-reload")
        eq(r.status, 200, "a request after the reload")
        check(_wait_text(path, "/api/after-reload"), "the access line is not in the new file")
        old = "\n".join(_lines(path + ".1"))
        check("listening on" in old and "/api/after-reload" not in old and "generation 2 applied" not in old,
              "the renamed file got lines after the reload")
        eq([o["event"] for o in _json_lines(path) if o.get("event") == "log_reopen_failed"], [],
           "log_reopen_failed lines")
    finally:
        gw.stop()


def _metric(admin_port, name):
    return metric_value(admin_port, TOKEN, name)


@test("logging.file on a full disk (/dev/full): requests are served, every lost line is counted, and "
      "once a reload gives a working file one line says how many")
def _(env):
    admin = free_port()
    good = os.path.join(env.tmp, "after-full.log")
    cfg = env.config({"logging": {"format": "json", "file": "/dev/full"},
                      "admin": {"listen": "127.0.0.1:%d" % admin}})
    gw = env.start_gateway("log-full", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    try:
        wait_tcp(admin, gw.proc, 10, "admin listener")
        n = 20
        with env.connect(gw) as c:
            for i in range(n):
                r = c.request("GET", "/api/full-%d" % i)
                eq(r.status, 200, "request %d with the log on a full disk" % i)
        deadline = time.monotonic() + 5 * TIME_FACTOR
        while _metric(admin, "portcullis_log_lines_dropped_total") < n:
            if time.monotonic() > deadline:
                fail("the %d access lines written to /dev/full are not counted: %s"
                     % (n, _metric(admin, "portcullis_log_lines_dropped_total")))
            time.sleep(0.05)
        cfg["logging"]["file"] = good
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(cfg))
        os.kill(gw.pid, signal.SIGHUP)
        check(_wait_text(good, "log_write_failed"), "no log_write_failed line in the working file: %s"
              % _lines(good)[:3])
        reports = [o for o in _json_lines(good) if o.get("event") == "log_write_failed"]
        eq(len(reports), 1, "log_write_failed lines")
        eq(reports[0].get("error"), "No space left on device", "the error reported")
        eq(reports[0].get("level"), "error", "the report's level")
        lost = _metric(admin, "portcullis_log_lines_dropped_total")
        eq(reports[0].get("lines_lost"), int(lost), "lines_lost reported vs the metric")
        check(lost >= n + 1, "%d lines lost counted for %d access lines and the startup lines" % (lost, n))
        with env.connect(gw) as c:
            eq(c.request("GET", "/api/written").status, 200, "a request after the reload")
        check(_wait_text(good, "/api/written"), "the access line after the reload is not written")
        eq(_metric(admin, "portcullis_log_lines_dropped_total"), lost, "lines lost after the reload")
    finally:
        gw.stop()
