"""Binary upgrade and retirement edge cases: an upgrade that must not take
over, an upgrade socket that moves with a reload or is squatted, a
replacement started while the old gateway drains, a slow reader retired by
a reload (gateway/main.c run(), gateway/upgrade.c, gateway/conn.c
gw_conn_retire)."""

import hashlib
import os
import signal
import socket
import subprocess
import time

from harness import (BINARY, ConnectionClosed, build_request, check, eq, free_port, test, to_yaml,
                     upstream_info)
from upgradekit import start_b, wait_log


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except ConnectionRefusedError:
        return False


def _read_head(ss, buf):
    while b"\r\n\r\n" not in buf:
        d = ss.recv(65536)
        if not d:
            raise ConnectionClosed("closed in head")
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return bytes(buf[:i]), bytearray(buf[i:])


@test("upgrade: SIGTERM to the new process during the handover: it does not take over, the old one serves",
      timeout=60)
def _(env):
    cfg = env.config()
    port = int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])
    a = env.start_gateway("edge-sig-a", cfg)
    # B's Redis is unreachable for a while: its mirror wait holds it between the handover and READY
    cfg_b = dict(cfg, redis=dict(cfg["redis"], address="127.0.0.1:%d" % free_port(),
                                 connect_timeout="2s", command_timeout="2s"))
    b = start_b(env, "edge-sig-b", cfg_b, True)
    try:
        check(wait_log(b, "upgrade: received", 10), "B got no sockets: %s" % b.log_tail(8, joined=True))
        time.sleep(0.3)
        os.kill(b.pid, signal.SIGTERM)
        eq(b.proc.wait(timeout=30), 1, "B's exit status")
        b.expect_exit = True
        check(wait_log(b, "upgrade: stopped by a signal during the handover; not taking over", 1),
              "B says why: %s" % b.log_tail(6, joined=True))
        check(a.alive(), "A exited")
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/after-aborted-upgrade"), "A still serves")
        check(_accepts(port), "the port refuses connections")
    finally:
        a.stop(grace=2)
        b.stop(grace=2)


@test("upgrade: a new process whose revocation mirror cannot load does not take over", timeout=60)
def _(env):
    cfg = env.config()
    a = env.start_gateway("edge-mirror-a", cfg)
    cfg_b = dict(cfg, redis=dict(cfg["redis"], address="127.0.0.1:%d" % free_port(),
                                 connect_timeout="500ms", command_timeout="500ms"))
    b = start_b(env, "edge-mirror-b", cfg_b, True)
    try:
        eq(b.proc.wait(timeout=30), 1, "B's exit status")
        b.expect_exit = True
        check(wait_log(b, "upgrade: the revocation mirror could not be loaded", 1),
              "B says why: %s" % b.log_tail(6, joined=True))
        check(a.alive(), "A exited")
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/after-refused-upgrade"), "A still serves")
    finally:
        a.stop(grace=2)
        b.stop(grace=2)


@test("upgrade: the upgrade socket follows a reload that changes listeners[0]; --upgrade with that file works",
      timeout=60)
def _(env):
    cfg = env.config()
    a = env.start_gateway("edge-move-a", cfg)
    b = None
    try:
        first = free_port()
        cfg2 = dict(cfg, listeners=[{"address": "127.0.0.1:%d" % first}] + cfg["listeners"])
        with open(a.config_path, "w") as f:
            f.write(to_yaml(cfg2))
        os.kill(a.pid, signal.SIGHUP)
        check(wait_log(a, "upgrade socket now @portcullis-upgrade-", 10),
              "the upgrade socket moved: %s" % a.log_tail(5, joined=True))
        b = start_b(env, "edge-move-b", cfg2, True)
        check(wait_log(b, "upgrade: the old process confirmed", 20), "B: %s" % b.log_tail(8, joined=True))
        eq(a.proc.wait(timeout=15), 0, "A's exit status after the handover")
        a.expect_exit = True
        with env.connect(first) as c:
            upstream_info(c.request("GET", "/on-b"), "B serves the listener the reload added")
    finally:
        a.stop(grace=2)
        if b:
            b.stop(grace=2)


@test("upgrade socket: squatted by another user: the gateway still starts (and says --upgrade cannot reach it)",
      timeout=30)
def _(env):
    cfg = env.config()
    name = "portcullis-upgrade-" + hashlib.sha256(cfg["listeners"][0]["address"].encode()).hexdigest()[:16]
    sq = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                           "-c", "import socket,time;s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET);"
                           "s.bind('\\0%s');s.listen(1);print('bound',flush=True);time.sleep(30)" % name],
                          stdout=subprocess.PIPE, text=True)
    gw = None
    try:
        eq(sq.stdout.readline().strip(), "bound", "squatter")
        gw = env.start_gateway("edge-squat", cfg)
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/squatted"), "the gateway serves")
        check(wait_log(gw, "a later --upgrade cannot take it over", 1), gw.log_tail(8, joined=True))
    finally:
        sq.kill()
        if gw:
            gw.stop(grace=2)


@test("drain: a replacement started while the old gateway drains starts", timeout=60)
def _(env):
    cfg = env.config({"timeouts": {"drain": "10s", "drain_idle": "10m"}})
    a = env.start_gateway("edge-drain-a", cfg)
    b = None
    try:
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/x"), "warm")   # an idle connection keeps A draining
            os.kill(a.pid, signal.SIGTERM)
            time.sleep(0.5)
            check(a.alive(), "A is still draining")
            b = start_b(env, "edge-drain-b", cfg, False)
            check(wait_log(b, "listening on", 10), "B did not start: %s" % b.log_tail(6, joined=True))
            with env.connect(b) as c2:
                upstream_info(c2.request("GET", "/on-b"), "B serves while A drains")
    finally:
        a.stop(grace=2)
        if b:
            b.stop(grace=2)


@test("reload: a slow reader retired by a reload: its next request is answered, with Connection: close",
      timeout=60)
def _(env):
    size = 3000000
    # The kernel acknowledges what sits in the client's receive buffer, so the
    # gateway sees the response delivered up to that buffer (64 KB here) before
    # the client reads it: drain_idle leaves room for that, and the ~9 s read
    # is still many drain_idle periods long.
    gw = env.start_gateway("edge-slow", env.config({"timeouts": {"reload_grace": "0s",
                                                                 "drain_idle": "1500ms"}}))
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        s.settimeout(10)
        s.connect(("127.0.0.1", gw.port))
        ss = env.client_context().wrap_socket(s, server_hostname="localhost")
        ss.sendall(build_request("GET", "/download?bytes=%d" % size, bearer=env.bearer))
        head, body = _read_head(ss, bytearray())
        check(b" 200 " in head.split(b"\r\n")[0], "head %r" % head[:80])
        os.kill(gw.pid, signal.SIGHUP)   # grace 0s: this connection retires at once
        low = head.lower()
        chunked = b"transfer-encoding: chunked" in low
        if not chunked:
            clen = int(low.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        # a slow client, about 320 KB/s, reading exactly this response
        while not (body.endswith(b"\r\n0\r\n\r\n") if chunked else len(body) >= clen):
            d = ss.recv(16384)
            check(d, "closed mid-body at %d" % len(body))
            body += d
            time.sleep(0.05)
        check(len(body) >= size, "the whole body: %d bytes" % len(body))
        ss.sendall(build_request("GET", "/after-slow-body", bearer=env.bearer))
        h, _ = _read_head(ss, bytearray())
        eq(h.split(b"\r\n")[0], b"HTTP/1.1 200 OK", "the next request's status")
        check(b"\r\nconnection: close\r\n" in h.lower(), "Connection: close in %r" % h)
        ss.close()
    finally:
        gw.stop(grace=2)


@test("upgrade: with more workers than the old process, no connection waits on a socket nobody polls",
      timeout=60)
def _(env):
    cfg = dict(env.config(), workers=1)
    a = env.start_gateway("edge-more-a", cfg)
    # B has 4 workers, so 3 sockets of its own; its Redis is unreachable, so it
    # waits for its mirror, then gives up
    cfg_b = dict(cfg, workers=4, redis=dict(cfg["redis"], address="127.0.0.1:%d" % free_port(),
                                            connect_timeout="2s", command_timeout="2s"))
    b = start_b(env, "edge-more-b", cfg_b, True)
    try:
        check(wait_log(b, "upgrade: received", 10), "B got no sockets: %s" % b.log_tail(8, joined=True))
        served = 0
        for i in range(12):   # while B waits: every connection is A's, at once
            with env.connect(a, timeout=1.5) as c:
                upstream_info(c.request("GET", "/during-%d" % i, timeout=1.5), "connection %d" % i)
                served += 1
        eq(served, 12, "connections served by A during the handover")
        eq(b.proc.wait(timeout=30), 1, "B gave up")
        b.expect_exit = True
        with env.connect(a) as c:
            upstream_info(c.request("GET", "/after"), "A still serves")
    finally:
        a.stop(grace=2)
        b.stop(grace=2)
