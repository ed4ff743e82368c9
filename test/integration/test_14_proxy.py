"""The PROXY protocol on client listeners (issue 14; gateway/conn.c C_PROXY,
config/config_listen.c): a raw client and HAProxy (TCP mode, send-proxy and
send-proxy-v2) in front of the gateway. The client the header names is what
X-Forwarded-For, the access log and the per-IP connection limits see; every
header that is missing, malformed, truncated, oversized, slow, of a version
the listener does not take, or sent by a peer outside trusted_from closes the
connection without a byte answered, is counted under its reason, and nothing
reaches the upstream."""

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

from harness import (BINARY, Conn, TIME_FACTOR, build_request, check, eq, fail, free_port,
                     kill_group, spawn, test, to_yaml, upstream_headers, upstream_info, wait_tcp)
from testkit import admin_request, config_check, wait_until

HAPROXY = "/usr/sbin/haproxy"
TOKEN = "admin-token-proxy-protocol-0123456"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REASONS = ("untrusted_peer", "malformed", "version", "too_long", "timeout", "closed")


# ---------------------------------------------------------------------------
# Headers

def v1(src="203.0.113.7", sport=40001, dst="198.51.100.1", dport=443, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(t, value):
    return struct.pack(">BH", t, len(value)) + value


def v2(src="203.0.113.7", sport=40001, dst="198.51.100.1", dport=443, local=False,
       tlvs=b"", crc=False):
    fam6 = ":" in src
    af = socket.AF_INET6 if fam6 else socket.AF_INET
    addrs = (socket.inet_pton(af, src) + socket.inet_pton(af, dst) +
             struct.pack(">HH", sport, dport))
    body = addrs + tlvs + (tlv(0x03, b"\0\0\0\0") if crc else b"")
    head = V2_SIG + bytes([0x20 if local else 0x21, 0x21 if fam6 else 0x11])
    hdr = head + struct.pack(">H", len(body)) + body
    if crc:
        hdr = hdr[:-4] + struct.pack(">I", _crc32c(hdr))
    return hdr


def v2_local():
    return V2_SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)


# ---------------------------------------------------------------------------
# Clients

def _raw(port, source="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def pp_conn(env, port, header, source="127.0.0.1", together=False, pieces=1, cert="device"):
    """A TLS connection to port whose first bytes are header (sent in pieces,
    or in the same segment as the ClientHello when together), from source."""
    raw = _raw(port, source)
    try:
        if together:
            raw.send(header, socket.MSG_MORE)   # held back and sent with the ClientHello
        else:
            step = max(1, -(-len(header) // pieces))
            for i in range(0, len(header), step):
                raw.sendall(header[i:i + step])
                if pieces > 1:
                    time.sleep(0.05)
        c = Conn.__new__(Conn)
        c.timeout, c.bearer, c.buf = 5.0, env.bearer, bytearray()
        c.sock = env.client_context(cert).wrap_socket(raw, server_hostname="localhost")
        return c
    except BaseException:
        raw.close()
        raise


def closed_silently(sock, what, timeout=5.0):
    """The gateway closes sock without sending one byte: EOF or a reset."""
    sock.settimeout(timeout * TIME_FACTOR)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        fail("%s: the connection stayed open" % what)
    finally:
        sock.close()
    eq(data, b"", "%s: bytes the gateway sent" % what)


def refusals(mport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^portcullis_proxy_protocol_refusals_total\{reason="(\w+)"\} (\d+)$',
                         text, re.M):
        out[m.group(1)] = int(m.group(2))
    for m in re.finditer(r'^portcullis_connections_refused_total\{reason="(\w+)"\} (\d+)$',
                         text, re.M):
        out["conn_" + m.group(1)] = int(m.group(2))
    return out


def _tls_timeouts(mport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        m = re.search(r'^portcullis_tls_handshake_failures_total\{reason="handshake_timeout"\} (\d+)$',
                      r.read().decode(), re.M)
    return int(m.group(1)) if m else 0


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def wait_delta(mport, before, want, what):
    """The counters moved by exactly want (refusals are counted as they close)."""
    got = {}
    for _ in range(int(40 * TIME_FACTOR)):
        got = delta(before, refusals(mport))
        if got == want:
            return
        time.sleep(0.05)
    eq(got, want, what)


def json_lines(path):
    out = []
    with open(path, "rb") as f:
        for ln in f.read().decode("utf-8", "replace").splitlines():
            if ln.startswith("{"):
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    pass
    return out


def access_line(gw, path):
    found = []

    def seen():
        found[:] = [o for o in json_lines(gw.log_path)
                    if o.get("event") == "access" and o.get("path") == path]
        return found
    check(wait_until(seen, 5 * TIME_FACTOR), "no access line for %s" % path)
    return found[0]


# ---------------------------------------------------------------------------
# Gateways

def _listener(port, mode, trusted, **kw):
    return dict({"address": "127.0.0.1:%d" % port, "proxy_protocol": mode,
                 "trusted_from": trusted}, **kw)


def pp_gateway(env, name, listeners=None, over=None):
    """A gateway whose listeners[0] reads any PROXY header from 127.0.0.1 only
    (1s to send it, at most 256 bytes), with a v1-only listener [1], a plain
    listener [2], an open metrics listener and the admin API."""
    mport, aport = free_port(), free_port()
    ls = listeners or [_listener(free_port(), "any", ["127.0.0.1/32", "::1"],
                                 proxy_timeout="1s", proxy_header_max=256),
                       _listener(free_port(), "v1", ["127.0.0.0/8"]),
                       {"address": "127.0.0.1:%d" % free_port()}]
    cfg = env.config(dict({"metrics": {"address": "127.0.0.1:%d" % mport},
                           "admin": {"listen": "127.0.0.1:%d" % aport},
                           "logging": {"format": "json", "access": True, "level": "info"}},
                          **(over or {})))
    cfg["listeners"] = ls
    if "rate_limits" in (over or {}):
        for r in cfg["routes"]:
            r["rate_limits"] = [x["name"] for x in over["rate_limits"]]
    gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    wait_tcp(mport, gw.proc, 10, "metrics listener")
    gw.mport, gw.aport, gw.cfg = mport, aport, cfg
    gw.ports = [int(x["address"].rsplit(":", 1)[1]) for x in ls]
    return gw


_shared = {}


def shared(env):
    gw = _shared.get("gw")
    if gw is None or not gw.alive() or gw.env is not env:
        gw = _shared["gw"] = pp_gateway(env, "pp-shared")
    return gw


def xff(resp):
    return upstream_headers(upstream_info(resp), "X-Forwarded-For")


# ---------------------------------------------------------------------------
# A raw client

@test("PROXY v1: the header's client is X-Forwarded-For and the access log's client_addr/port")
def _(env):
    gw = shared(env)
    with pp_conn(env, gw.ports[0], v1("203.0.113.7", 40001)) as c:
        r = c.request("GET", "/pp/v1-xff")
        eq(xff(r), ["203.0.113.7"], "X-Forwarded-For")
    a = access_line(gw, "/pp/v1-xff")
    eq((a["client_addr"], a["client_port"], a["status"]), ("203.0.113.7", 40001, 200),
       "access log client")
    with pp_conn(env, gw.ports[1], v1("2001:db8::42", 5555, "2001:db8::1")) as c:
        eq(xff(c.request("GET", "/pp/v1-six")), ["2001:db8::42"], "X-Forwarded-For (TCP6)")


@test("PROXY: an IPv4 client written as an IPv4-mapped IPv6 address is that IPv4 address "
      "everywhere (X-Forwarded-For, access log, rate-limit key)")
def _(env):
    gw = pp_gateway(env, "pp-mapped", over={
        "rate_limits": [{"name": "per_ip", "key": "ip", "rate": "2/m", "burst": 2}]})
    try:
        with pp_conn(env, gw.ports[0], v1("203.0.113.9", 40010)) as c:
            codes = [c.request("GET", "/pp/mapped-four").status for _ in range(2)]
        eq(codes, [200, 200], "two requests over TCP4")
        with pp_conn(env, gw.ports[0], v1("::ffff:203.0.113.9", 40011, "::ffff:198.51.100.1")) as c:
            r = c.request("GET", "/pp/mapped-six")
            eq(r.status, 429, "the same client over TCP6 (mapped) shares its rate-limit budget")
        with pp_conn(env, gw.ports[0], v2("::ffff:203.0.113.10", 40012, "::ffff:198.51.100.1")) as c:
            eq(xff(c.request("GET", "/pp/mapped-v2")), ["203.0.113.10"], "X-Forwarded-For (v2 TCP6 mapped)")
        a = access_line(gw, "/pp/mapped-v2")
        eq((a["client_addr"], a["client_port"]), ("203.0.113.10", 40012), "access log client")
    finally:
        gw.stop()


@test("PROXY v2 with TLVs (ALPN, authority, unique id, SSL, NOOP, CRC32C), sent in pieces")
def _(env):
    gw = shared(env)
    ssl_tlv = tlv(0x20, bytes([0x01]) + b"\0\0\0\0" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"lb"))
    tlvs = (tlv(0x01, b"http/1.1") + tlv(0x02, b"api.example") + tlv(0x05, b"req-1234") +
            ssl_tlv + tlv(0x04, b"\0" * 7))
    hdr = v2("198.51.100.23", 61000, tlvs=tlvs, crc=True)
    with pp_conn(env, gw.ports[0], hdr, pieces=3) as c:
        eq(xff(c.request("GET", "/pp/v2-tlv")), ["198.51.100.23"], "X-Forwarded-For")
    eq(access_line(gw, "/pp/v2-tlv")["client_port"], 61000, "access log client_port")
    with pp_conn(env, gw.ports[0], v2("2001:db8::7", 443, "2001:db8::1")) as c:
        eq(xff(c.request("GET", "/pp/v2-six")), ["2001:db8::7"], "X-Forwarded-For (v6)")


@test("PROXY header and ClientHello in one segment: the TLS bytes stay for the handshake")
def _(env):
    gw = shared(env)
    for hdr, who in ((v1("192.0.2.10"), "v1"), (v2("192.0.2.11"), "v2")):
        with pp_conn(env, gw.ports[0], hdr, together=True) as c:
            eq(xff(c.request("GET", "/pp/together")), [who == "v1" and "192.0.2.10" or "192.0.2.11"],
               "X-Forwarded-For (%s header with the ClientHello)" % who)


@test("PROXY v2 LOCAL (a balancer's health check) and v1 UNKNOWN keep the real peer")
def _(env):
    gw = shared(env)
    # the listener trusts 127.0.0.1 only; the v1 one 127.0.0.0/8: a source of our choice
    with pp_conn(env, gw.ports[1], b"PROXY UNKNOWN\r\n", source="127.0.0.5") as c:
        eq(xff(c.request("GET", "/pp/unknown")), ["127.0.0.5"], "X-Forwarded-For (UNKNOWN)")
    with pp_conn(env, gw.ports[0], v2_local()) as c:
        eq(xff(c.request("GET", "/pp/local")), ["127.0.0.1"], "X-Forwarded-For (LOCAL)")


@test("PROXY refusals: untrusted peer, malformed, ClientHello, wrong version, oversized, "
      "truncated, slow: closed unanswered, each counted, nothing upstream", timeout=60)
def _(env):
    gw = shared(env)
    p_any, p_v1 = gw.ports[0], gw.ports[1]
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32)
    cases = [
        ("untrusted peer with a valid header", p_any, "127.0.0.9", v1(), "untrusted_peer"),
        ("malformed v1", p_any, "127.0.0.1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "malformed"),
        ("not a header at all", p_any, "127.0.0.1", b"GET / HTTP/1.1\r\n\r\n", "malformed"),
        ("a TLS ClientHello where the header must be", p_any, "127.0.0.1", hello, "malformed"),
        ("v2 on a v1-only listener", p_v1, "127.0.0.1", v2(), "version"),
        ("v2 longer than proxy_header_max", p_any, "127.0.0.1",
         v2(tlvs=tlv(0x04, b"\0" * 600)), "too_long"),
        ("v1 line without its CRLF past 107 bytes", p_v1, "127.0.0.1",
         b"PROXY UNKNOWN " + b"x" * 120, "too_long"),
        ("bad v2 CRC32C", p_any, "127.0.0.1", v2(crc=True)[:-1] + b"\0", "malformed"),
    ]
    up = env.upstream_count()
    for what, port, src, data, reason in cases:
        before = refusals(gw.mport)
        s = _raw(port, src)
        s.sendall(data)
        closed_silently(s, what)
        wait_delta(gw.mport, before, {reason: 1}, "counters after: %s" % what)

    before = refusals(gw.mport)
    s = _raw(p_any)
    s.sendall(v2()[:20])
    s.shutdown(socket.SHUT_WR)
    closed_silently(s, "truncated header, then EOF")
    wait_delta(gw.mport, before, {"closed": 1}, "counters after a truncated header")

    before = refusals(gw.mport)
    s = _raw(p_any)
    s.sendall(v1()[:12])
    t0 = time.monotonic()
    closed_silently(s, "slow header", timeout=5)
    took = time.monotonic() - t0
    check(0.8 <= took <= 3 * TIME_FACTOR, "slow header closed after %.2fs, proxy_timeout is 1s" % took)
    wait_delta(gw.mport, before, {"timeout": 1}, "counters after a slow header")

    # a plain TLS client on a PROXY listener: its ClientHello is refused
    before = refusals(gw.mport)
    try:
        env.connect(gw.ports[0]).close()
        fail("a TLS handshake without a PROXY header succeeded")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError):
        pass
    wait_delta(gw.mport, before, {"malformed": 1}, "counters after a plain TLS client")
    eq(env.upstream_count(), up, "requests that reached the upstream")
    lines = [o for o in json_lines(gw.log_path) if o.get("event") == "proxy_protocol_refused"]
    tl = [o for o in lines if "(too_long)" in o.get("msg", "")]
    check(tl and tl[0]["level"] == "info" and str(tl[0].get("peer", "")).startswith("127.0.0.1:"),
          "no INFO line with the peer for a too_long refusal: %s" % tl[:1])
    un = [o for o in lines if "not in trusted_from" in o.get("msg", "")]
    eq([o["level"] for o in un], ["warn"], "levels of the untrusted-peer lines (one WARN a minute)")
    s = _raw(p_any, "127.0.0.9")
    s.sendall(v1())   # the listener defers the accept until the first byte (TCP_DEFER_ACCEPT)
    closed_silently(s, "a second untrusted peer")
    time.sleep(0.3)
    eq([o["level"] for o in json_lines(gw.log_path) if o.get("event") == "proxy_protocol_refused"
        and "not in trusted_from" in o.get("msg", "")], ["warn"],
       "the second untrusted peer within the minute is not logged at INFO or above")
    # the gateway still serves after all that
    with pp_conn(env, gw.ports[0], v1("203.0.113.99")) as c:
        eq(xff(c.request("GET", "/pp/after-refusals")), ["203.0.113.99"], "served afterwards")


@test("PROXY and connection_limits: the per-IP limits count the header's clients, not the balancer")
def _(env):
    gw = pp_gateway(env, "pp-limits", over={"connection_limits": {"per_ip_concurrent": 1}})
    try:
        port = gw.ports[0]
        held = pp_conn(env, port, v1("203.0.113.1"))
        eq(xff(held.request("GET", "/pp/held")), ["203.0.113.1"], "first client")
        before = refusals(gw.mport)
        s = _raw(port)
        s.sendall(v1("203.0.113.1", 40002))
        closed_silently(s, "a second connection of the same client")
        wait_delta(gw.mport, before, {"conn_per_ip_concurrency": 1}, "refused by per_ip_concurrent")
        with pp_conn(env, port, v1("203.0.113.2")) as c:
            eq(xff(c.request("GET", "/pp/other")), ["203.0.113.2"],
               "another client from the same balancer is served")
        eq(held.request("GET", "/pp/held-again").status, 200, "the first client's connection")
        # a third connection of the held client is still refused: no slot was released twice
        before = refusals(gw.mport)
        s = _raw(port)
        s.sendall(v1("203.0.113.1", 40004))
        closed_silently(s, "a third connection of the same client")
        wait_delta(gw.mport, before, {"conn_per_ip_concurrency": 1}, "still refused")
        # LOCAL names no client: the balancer's own health checks spend no per-IP budget
        with pp_conn(env, port, v2_local()) as a, pp_conn(env, port, v2_local()) as b:
            eq((a.request("GET", "/pp/local-1").status, b.request("GET", "/pp/local-2").status),
               (200, 200), "two LOCAL connections at once under per_ip_concurrent 1")
        held.close()
        # its slot is free once it closed
        ok = wait_until(lambda: _served(env, port, v1("203.0.113.1", 40003)), 5 * TIME_FACTOR)
        check(ok, "the first client is served again after closing its connection")
    finally:
        gw.stop()


def _served(env, port, hdr):
    try:
        with pp_conn(env, port, hdr) as c:
            return c.request("GET", "/pp/again").status == 200
    except (ssl.SSLError, OSError):
        return False


@test("PROXY: the TLS handshake timeout starts after the header (a header at 1.5s with a 1s "
      "handshake timeout closes at 2.5s, counted as a handshake timeout, not a PROXY one)")
def _(env):
    port = free_port()
    gw = pp_gateway(env, "pp-hs-timer", listeners=[_listener(port, "v1", ["127.0.0.1"],
                                                             proxy_timeout="3s")],
                    over={"tls": dict(env.config()["tls"], handshake_timeout="1s")})
    try:
        # the start's readiness probe (a connect without a byte) is a "closed" refusal: let it land
        wait_until(lambda: refusals(gw.mport).get("closed", 0) >= 1, 3 * TIME_FACTOR)
        before = refusals(gw.mport)
        hs = _tls_timeouts(gw.mport)
        s = _raw(port)
        t0 = time.monotonic()
        s.sendall(v1()[:10])
        time.sleep(1.5)
        s.sendall(v1()[10:])
        closed_silently(s, "no ClientHello after the header")
        took = time.monotonic() - t0
        check(2.3 <= took <= 2.5 + 1.0 * TIME_FACTOR, "closed after %.2fs (want about 2.5s)" % took)
        check(wait_until(lambda: _tls_timeouts(gw.mport) == hs + 1, 5 * TIME_FACTOR),
              "the handshake timeout is not counted")
        eq(delta(before, refusals(gw.mport)), {}, "PROXY refusals")
    finally:
        gw.stop()


@test("PROXY and rate limits keyed by ip: each header client has its own budget")
def _(env):
    gw = pp_gateway(env, "pp-ratelimit", over={
        "rate_limits": [{"name": "per_ip", "key": "ip", "rate": "2/m", "burst": 2}]})
    try:
        up = env.upstream_count()
        with pp_conn(env, gw.ports[0], v1("203.0.113.50")) as c:
            codes = [c.request("GET", "/pp/rl").status for _ in range(3)]
        eq(codes, [200, 200, 429], "statuses of 203.0.113.50")
        with pp_conn(env, gw.ports[0], v2("203.0.113.51")) as c:
            codes = [c.request("GET", "/pp/rl").status for _ in range(2)]
        eq(codes, [200, 200], "statuses of 203.0.113.51 (another client, same balancer)")
        eq(env.upstream_count() - up, 4, "requests that reached the upstream")
    finally:
        gw.stop()


@test("reload turns the PROXY protocol on for a listener: new connections need a header, "
      "an open one keeps working")
def _(env):
    port = free_port()
    gw = pp_gateway(env, "pp-reload", listeners=[{"address": "127.0.0.1:%d" % port}])
    try:
        held = env.connect(port)
        eq(xff(held.request("GET", "/pp/plain")), ["127.0.0.1"], "plain listener")
        cfg = dict(gw.cfg, listeners=[_listener(port, "v2", ["127.0.0.1"])])
        with open(gw.config_path, "w") as f:
            f.write(to_yaml(cfg))
        status, body = admin_request(gw.aport, TOKEN, "POST", "/admin/reload")
        eq(status, 200, "reload: %s" % (body,))
        with pp_conn(env, port, v2("192.0.2.77")) as c:
            eq(xff(c.request("GET", "/pp/after-reload")), ["192.0.2.77"], "PROXY after the reload")
        before = refusals(gw.mport)
        try:
            env.connect(port).close()
            fail("a plain TLS client was served on the listener that now reads PROXY")
        except (ssl.SSLError, OSError):
            pass
        wait_delta(gw.mport, before, {"malformed": 1}, "plain client refused after the reload")
        eq(held.request("GET", "/pp/held").status, 200, "the connection accepted before the reload")
        held.close()
    finally:
        gw.stop()


@test("config: PROXY without trusted_from, a bad network, a bad mode: exit 2 with file:line:col")
def _(env):
    base = env.config()
    cases = [
        ([{"address": "127.0.0.1:%d" % free_port(), "proxy_protocol": "v2"}],
         r":\d+:\d+: listeners\[0\]\.proxy_protocol: needs trusted_from"),
        ([{"address": "127.0.0.1:%d" % free_port(), "proxy_protocol": "v1",
           "trusted_from": ["10.0.0.0/40"]}],
         r":\d+:\d+: listeners\[0\]\.trusted_from\[0\]: invalid network \"10\.0\.0\.0/40\""),
        ([{"address": "127.0.0.1:%d" % free_port(), "proxy_protocol": "yes",
           "trusted_from": ["10.0.0.0/8"]}],
         r":\d+:\d+: listeners\[0\]\.proxy_protocol: expected one of: off, v1, v2, any"),
        ([{"address": "127.0.0.1:%d" % free_port(), "trusted_from": ["10.0.0.0/8"]}],
         r":\d+:\d+: listeners\[0\]\.trusted_from: only with proxy_protocol"),
    ]
    for i, (ls, want) in enumerate(cases):
        rc, out = config_check(env, dict(base, listeners=ls), "pp-bad-%d" % i)
        eq(rc, 2, "exit status of --check (%s)" % want)
        check(re.search(want, out), "--check output lacks %r: %s" % (want, out))


# ---------------------------------------------------------------------------
# HAProxy in front

class HAProxy:
    def __init__(self, env, name, backends):
        """backends: [(frontend port, "send-proxy" | "send-proxy-v2", gateway port)]."""
        lines = ["global", "    maxconn 200", "defaults", "    mode tcp",
                 "    timeout connect 2s", "    timeout client 30s", "    timeout server 30s"]
        for i, (fport, opt, gport) in enumerate(backends):
            lines += ["frontend fe%d" % i, "    bind 127.0.0.1:%d" % fport,
                      "    default_backend be%d" % i, "backend be%d" % i,
                      "    server gw 127.0.0.1:%d %s" % (gport, opt)]
        self.path = os.path.join(env.tmp, "haproxy-%s.cfg" % name)
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(env.tmp, "haproxy-%s.log" % name), "ab")
        self.proc = spawn([HAPROXY, "-db", "-f", self.path], stdout=self.log, stderr=self.log)
        for fport, _, _ in backends:
            wait_tcp(fport, self.proc, 10, "haproxy")

    def stop(self):
        kill_group(self.proc, 5)
        self.log.close()


def _via(env, fport, source):
    c = Conn.__new__(Conn)
    c.timeout, c.bearer, c.buf = 5.0, env.bearer, bytearray()
    c.sock = env.client_context("device").wrap_socket(_raw(fport, source), server_hostname="localhost")
    return c


@test("HAProxy send-proxy-v2 and send-proxy: the upstream and the access log see each client's "
      "own address; per-IP limits count them apart", timeout=60)
def _(env):
    if not os.access(HAPROXY, os.X_OK):
        fail("%s is not installed (scripts/deps.sh installs haproxy)" % HAPROXY)
    gport = free_port()
    gw = pp_gateway(env, "pp-haproxy", listeners=[_listener(gport, "any", ["127.0.0.1/32"])],
                    over={"connection_limits": {"per_ip_concurrent": 1}})
    f2, f1 = free_port(), free_port()
    hp = HAProxy(env, "pp", [(f2, "send-proxy-v2", gport), (f1, "send-proxy", gport)])
    try:
        a = _via(env, f2, "127.0.0.2")
        r = a.request("GET", "/pp/ha-v2")
        eq(xff(r), ["127.0.0.2"], "X-Forwarded-For via send-proxy-v2")
        line = access_line(gw, "/pp/ha-v2")
        eq(line["client_addr"], "127.0.0.2", "access log client_addr via HAProxy")
        b = _via(env, f1, "127.0.0.3")
        eq(xff(b.request("GET", "/pp/ha-v1")), ["127.0.0.3"], "X-Forwarded-For via send-proxy")

        # 127.0.0.2 holds its one connection: a second one is refused, 127.0.0.4 is served
        before = refusals(gw.mport)
        up = env.upstream_count()
        try:
            _via(env, f2, "127.0.0.2").request("GET", "/pp/ha-over")
            fail("a second connection of 127.0.0.2 was served over per_ip_concurrent 1")
        except (ssl.SSLError, OSError, AssertionError) as e:
            if isinstance(e, AssertionError) and "was served" in str(e):
                raise
        wait_delta(gw.mport, before, {"conn_per_ip_concurrency": 1}, "refused by per_ip_concurrent")
        eq(env.upstream_count(), up, "requests of the refused connection that reached the upstream")
        with _via(env, f2, "127.0.0.4") as c:
            eq(xff(c.request("GET", "/pp/ha-other")), ["127.0.0.4"], "another client is served")
        eq(a.request("GET", "/pp/ha-held").status, 200, "the first client's connection")
        a.close()
        b.close()
    finally:
        hp.stop()
        gw.stop()
