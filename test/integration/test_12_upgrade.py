"""Binary upgrade (portcullis --upgrade) and the refusal of a second gateway
on the same listeners (docs/operations.md, gateway/upgrade.h)."""

import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

from harness import (BINARY, TIME_FACTOR, build_request as harness_request, check, eq, fail,
                     free_port, test, to_yaml, upstream_info)
from testkit import wait_until
from upgradekit import failures, handover, start_b, wait_log

SECOND = ("listen on %s: another process is already listening there (a second gateway?); "
          "to replace a running gateway without dropping connections, start the new one "
          "with --upgrade")


def upgrade_name(listener_text):
    """The default upgrade_socket of a gateway whose first listener is that."""
    return "@portcullis-upgrade-" + hashlib.sha256(listener_text.encode()).hexdigest()[:16]


def sockaddr(name):
    return "\0" + name[1:] if name.startswith("@") else name


def run_gateway(env, name, cfg, *args, timeout=15):
    """Runs the gateway with cfg to its end: (exit status, its output)."""
    path = os.path.join(env.tmp, "gw-%s.yaml" % name)
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    r = subprocess.run([BINARY, "-c", path] + list(args), capture_output=True, text=True,
                       timeout=timeout * TIME_FACTOR)
    return r.returncode, r.stdout + r.stderr


def served(env, port, what):
    """One request on a new connection to port is answered by the upstream;
    its unique path (to find it in a gateway's access log)."""
    path = "/probe/%s" % uuid.uuid4().hex
    with env.connect(port) as c:
        upstream_info(c.request("GET", path), what)
    return path


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def in_log(gw, text):
    return any(text in ln for ln in gw.log_tail(100000))


def wait_exit(gw, secs):
    try:
        return gw.proc.wait(timeout=secs * TIME_FACTOR)
    except subprocess.TimeoutExpired:
        fail("gateway %s still runs %ss later: %s" % (gw.name, secs, gw.log_tail(6, joined=True)))


def msg(mtype, payload):
    """A handover message (format in gateway/upgrade.h)."""
    return b"PCUG" + bytes([1, mtype]) + struct.pack(">H", 8 + len(payload)) + payload


@test("upgrade: under full-handshake and keep-alive load, --upgrade hands over with 0 refused, "
      "reset or failed connections; then only the new process serves", timeout=120)
def _(env):
    reports, a, b = handover(env, "upgrade", seconds=4.0, tag="up")
    try:
        eq(a.proc.returncode, 0, "exit status of the old gateway")
        for mode, rep in reports.items():
            eq(failures(rep), {}, "%s: failed connections or requests (%s)"
               % (mode, rep.get("error_samples")))
            eq(rep["errors"]["http_status"], {}, "%s: error statuses" % mode)
            check(rep["requests"] > 100, "%s: only %d requests ran" % (mode, rep["requests"]))
        check(in_log(a, "upgrade: pid %d serves on every listener now; draining as on SIGTERM"
                     % b.pid), "old gateway did not log the handover: %s" % a.log_tail(6, joined=True))
        check(in_log(b, "upgrade: received 2 listening sockets from pid %d (2 on this "
                     "configuration's listeners)" % a.pid),
              "new gateway did not log the sockets: %s" % b.log_tail(6, joined=True))
        path = served(env, b.port, "after the upgrade")
        check(wait_log(b, path, 5), "the new gateway did not log %s" % path)
        check(not in_log(a, path), "the old gateway logged a request after it exited")
        check(b.alive(), "new gateway exited")
    finally:
        eq(b.stop(grace=10), 0, "exit status of the new gateway on SIGTERM")


@test("upgrade: a second gateway on the same listeners without --upgrade exits 1 with the "
      "message, and the first keeps serving alone", timeout=60)
def _(env):
    cfg = env.config()
    a = env.start_gateway("second-a", cfg)
    try:
        text = cfg["listeners"][0]["address"]
        rc, out = run_gateway(env, "second-b", cfg)
        eq(rc, 1, "exit status of the second gateway (output: %s)" % out.strip())
        check(SECOND % text in out, "message: %s" % out.strip())
        check("listening on" not in out, "the second gateway said it listens: %s" % out)
        path = served(env, a.port, "first gateway after the refusal")
        check(wait_log(a, path, 5), "the first gateway did not serve %s" % path)
        # a second gateway whose other listener is free is refused all the same
        other = env.config()
        other["listeners"] = [{"address": "127.0.0.1:%d" % free_port()}, {"address": text}]
        rc, out = run_gateway(env, "second-c", other)
        eq(rc, 1, "exit status with one listener held (output: %s)" % out.strip())
        check(SECOND % text in out, "message: %s" % out.strip())
        check(not refused(a.port) and a.alive(), "the first gateway stopped serving")
    finally:
        eq(a.stop(), 0, "exit status of the first gateway")


@test("upgrade: --upgrade with no running gateway exits 1 with the reason", timeout=30)
def _(env):
    cfg = env.config()
    text = cfg["listeners"][0]["address"]
    rc, out = run_gateway(env, "nobody", cfg, "--upgrade")
    eq(rc, 1, "exit status (output: %s)" % out.strip())
    check("--upgrade: no running gateway answers on the upgrade socket %s (Connection refused); "
          "start without --upgrade, or set upgrade_socket to the running gateway's"
          % upgrade_name(text) in out, "message: %s" % out.strip())
    check(refused(int(text.rsplit(":", 1)[1])), "something listens on the port after the failure")


@test("upgrade: a peer of another uid, a malformed message and a peer that leaves midway are "
      "refused, and the gateway keeps serving", timeout=60)
def _(env):
    cfg = env.config()
    a = env.start_gateway("peers", cfg)
    name = upgrade_name(cfg["listeners"][0]["address"])
    try:
        if os.geteuid() == 0:
            code = ("import socket,sys\n"
                    "s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n"
                    "s.settimeout(5); s.connect('\\0' + sys.argv[1][1:])\n"
                    "sys.stdout.write(s.recv(300).hex())\n")
            r = subprocess.run([sys.executable, "-c", code, name],
                               capture_output=True, text=True, timeout=10, user=65534)
            eq(r.returncode, 0, "foreign client (stderr %s)" % r.stderr)
            eq(bytes.fromhex(r.stdout), msg(6, struct.pack(">H", 30) +
                                            b"refused: not the gateway's uid"),
               "answer to uid 65534")
            check(wait_log(a, "upgrade: refused a peer on %s (pid" % name, 5) and
                  in_log(a, "uid 65534): only uid 0 or root may take over this gateway"),
                  "no log line for the foreign peer: %s" % a.log_tail(4, joined=True))
        for bogus in (b"GET / HTTP/1.1\r\n\r\n", msg(1, b"\0\0"), msg(4, struct.pack(">I", 7))):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(5)
            s.connect(sockaddr(name))
            s.send(bogus)
            answer = s.recv(300)
            s.close()
            check(answer[5] == 6 and answer.endswith(
                b"malformed message" if bogus[:4] != b"PCUG" or bogus[5] == 1 else
                b"message out of order"), "answer to %r: %r" % (bogus[:12], answer))
        # HELLO, take the sockets, leave without READY: nothing changes
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(5)
        s.connect(sockaddr(name))
        s.send(msg(1, struct.pack(">I", os.getpid())))
        fds = []
        while True:
            data, anc, _, _ = s.recvmsg(300, socket.CMSG_SPACE(4 * 4))
            for level, typ, blob in anc:
                fds += list(struct.unpack("%di" % (len(blob) // 4), blob[:len(blob) // 4 * 4]))
            if data[5] == 3:
                break
        s.close()
        for fd in fds:
            os.close(fd)
        eq(len(fds), cfg["workers"], "sockets handed to the client")
        check(wait_log(a, "went away before it was ready", 5),
              "no log line for the peer that left: %s" % a.log_tail(4, joined=True))
        check(in_log(a, "refused the handover to pid %d: malformed message" % os.getpid()),
              "no log line for the malformed message: %s" % a.log_tail(4, joined=True))
        for i in range(4):
            served(env, a.port, "after the refused peers (%d)" % i)
        check(a.alive(), "the gateway exited")
    finally:
        eq(a.stop(), 0, "exit status")


@test("upgrade: with another worker count, a listener added and one removed, and a path "
      "upgrade_socket, every listener of the new configuration is served", timeout=90)
def _(env):
    keep, gone, added = free_port(), free_port(), free_port()
    sock = os.path.join(env.tmp, "upgrade-%d.sock" % keep)
    cfg = env.config({"workers": 2, "upgrade_socket": sock})
    cfg["listeners"] = [{"address": "127.0.0.1:%d" % keep}, {"address": "127.0.0.1:%d" % gone}]
    a = env.start_gateway("shape-a", cfg)
    gws = [a]
    try:
        served(env, gone, "the listener the new configuration drops, before")
        for workers in (3, 1):
            new = dict(cfg, workers=workers)
            new["listeners"] = [{"address": "127.0.0.1:%d" % keep},
                                {"address": "127.0.0.1:%d" % added}]
            b = start_b(env, "shape-%d" % workers, new, True)
            gws.append(b)
            check(wait_log(b, "listening on", 15), "new gateway did not start: %s"
                  % b.log_tail(6, joined=True))
            eq(wait_exit(gws[-2], 15), 0, "exit status of the old gateway")
            for i in range(2 * workers + 2):   # every socket of both listeners is polled
                for port in (keep, added):
                    path = served(env, port, "%d workers, port %d, connection %d"
                                  % (workers, port, i))
                    check(wait_log(b, path, 5), "the new gateway did not serve %s" % path)
            check(refused(gone), "the dropped listener still accepts connections")
            check(wait_until(lambda: os.path.exists(sock), 5 * TIME_FACTOR),
                  "the new gateway did not bind the upgrade socket path")
            cfg = new
        check(in_log(gws[1], "upgrade: listener 127.0.0.1:%d of the running gateway: its "
                     "address is not among the configured listeners; closed" % gone),
              "no log line for the dropped listener: %s" % gws[1].log_tail(8, joined=True))
    finally:
        for gw in gws:
            gw.stop(grace=5)
    check(not os.path.exists(sock), "the upgrade socket path was left behind")


@test("drain: a request sent on an idle keep-alive connection just after SIGTERM is answered "
      "with Connection: close; still idle, it closes after timeouts.drain_idle", timeout=60)
def _(env):
    gw = env.start_gateway("drain-idle", env.config({"timeouts": {"drain_idle": "1s"}}))
    try:
        with env.connect(gw) as busy, env.connect(gw) as idle:
            upstream_info(busy.request("GET", "/before-sigterm"), "before SIGTERM")
            upstream_info(idle.request("GET", "/before-sigterm"), "before SIGTERM")
            t0 = time.monotonic()
            os.kill(gw.pid, signal.SIGTERM)
            time.sleep(0.3)
            r = busy.request("GET", "/after-sigterm")
            upstream_info(r, "request on an idle connection after SIGTERM")
            eq(r.header("Connection"), "close", "Connection header of that response")
            check(busy.is_closed(), "the connection stayed open after its response")
            check(idle.is_closed(timeout=5), "the idle connection was not closed")
            took = time.monotonic() - t0
            check(0.9 < took < 3 * TIME_FACTOR, "the idle connection closed %.1fs after SIGTERM "
                  "(drain_idle 1s)" % took)
        eq(wait_exit(gw, 5), 0, "exit status")
    finally:
        gw.stop(grace=2)
    gw = env.start_gateway("drain-idle0", env.config({"timeouts": {"drain_idle": "0s"}}))
    try:
        with env.connect(gw) as idle:
            upstream_info(idle.request("GET", "/before-sigterm"), "before SIGTERM")
            t0 = time.monotonic()
            os.kill(gw.pid, signal.SIGTERM)
            check(idle.is_closed(timeout=3), "drain_idle 0s: the idle connection was not closed")
            check(time.monotonic() - t0 < 0.8 * TIME_FACTOR, "drain_idle 0s: closed only after "
                  "%.1fs" % (time.monotonic() - t0))
        eq(wait_exit(gw, 5), 0, "exit status")
    finally:
        gw.stop(grace=2)


@test("drain: a response whose head went out before SIGTERM completes, and the next request "
      "on its connection is answered with Connection: close", timeout=60)
def _(env):
    gw = env.start_gateway("drain-head", env.config({"timeouts": {"drain_idle": "2s"}}))
    try:
        with env.connect(gw, timeout=10) as warm:   # the upstream makes its data once
            eq(len(warm.request("GET", "/download?bytes=20000000", timeout=20).body), 20000000,
               "warm-up download")
        with env.connect(gw, timeout=10) as c:
            c.send(harness_request("GET", "/download?bytes=20000000", bearer=env.bearer))
            time.sleep(0.5)   # the head and part of the body are on their way; we do not read
            os.kill(gw.pid, signal.SIGTERM)
            time.sleep(0.2)
            r = c.read_response(timeout=10)
            eq(r.status, 200, "the download in progress")
            eq(len(r.body), 20000000, "its body")
            eq(r.header("Connection"), None, "Connection header of the head sent before SIGTERM")
            r = c.request("GET", "/after-sigterm")
            upstream_info(r, "the next request on that connection")
            eq(r.header("Connection"), "close", "Connection header of that response")
        eq(wait_exit(gw, 8), 0, "exit status")
    finally:
        gw.stop(grace=2)
