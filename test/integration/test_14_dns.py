"""Names, not only addresses: upstream servers and Redis given as DNS names.

A small DNS server on loopback (DnsServer, UDP, A/AAAA answers from a dict
the test changes) is the gateway's only name server (resolver.nameservers).
Upstreams here are tiny HTTP servers of the test's own that answer with
their tag, so a response says which address served it; they listen on
127.0.0.x with one port, since a name gives addresses and the port comes
from the configuration.
"""

import contextlib
import http.server
import json
import os
import re
import socket
import socketserver
import struct
import subprocess
import threading
import time

from harness import (BINARY, SetupError, check, eq, free_port, kill_group, short, spawn, test,
                     wait_tcp)
from loadgen import ADMIN_TOKEN, ReloadGateway
from testkit import config_check, metric_value, wait_until


class DnsServer:
    """UDP DNS on 127.0.0.1: records maps a lowercase name to a list of IP
    strings (IPv4 for A, IPv6 for AAAA); a name not in it is NXDOMAIN. The
    question is echoed as it came (evdns randomizes its case)."""

    def __init__(self):
        self.records = {}
        self.queries = 0
        self.asked = {}        # name -> queries for it
        self.rotate = False    # each answer starts one address further on
        self.silent = False    # no answers at all (a name server gone quiet)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def set(self, name, addrs):
        with self.lock:
            if addrs is None:
                self.records.pop(name, None)
            else:
                self.records[name] = list(addrs)

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.silent:
                with self.lock:
                    self.queries += 1
                continue
            try:
                out = self._answer(data)
            except Exception:   # a query this server does not parse: no answer
                continue
            self.sock.sendto(out, peer)

    def _answer(self, data):
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        off, labels = 12, []
        while data[off]:
            n = data[off]
            labels.append(data[off + 1:off + 1 + n].decode("ascii"))
            off += 1 + n
        off += 1
        qtype, _qclass = struct.unpack("!HH", data[off:off + 4])
        question = data[12:off + 4]
        name = ".".join(labels).lower()
        with self.lock:
            self.queries += 1
            self.asked[name] = self.asked.get(name, 0) + 1
            addrs = self.records.get(name)
            if addrs and self.rotate:
                k = self.asked[name] % len(addrs)
                addrs = addrs[k:] + addrs[:k]
        answers = []
        if addrs is not None:
            for a in addrs:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                if (qtype == 1 and fam == socket.AF_INET) or (qtype == 28 and fam == socket.AF_INET6):
                    rdata = socket.inet_pton(fam, a)
                    answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 1, len(rdata)) + rdata)
        rcode = 0 if addrs is not None else 3
        head = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0)
        return head + question + b"".join(answers)

    def count(self, name):
        with self.lock:
            return self.asked.get(name, 0)

    def close(self):
        self._stop = True
        self.sock.close()


class TagUpstream:
    """An HTTP/1.1 keep-alive server on ip:port answering 200 with its tag."""

    def __init__(self, ip, port, tag):
        self.tag, self.count = tag, 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.count += 1
                body = outer.tag.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = S((ip, port), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _upstream_port():
    """A port free on both 127.0.0.2 and 127.0.0.3 (and 127.0.0.4)."""
    for _ in range(50):
        p = free_port()
        try:
            for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                s = socket.socket()
                s.bind((ip, p))
                s.close()
            return p
        except OSError:
            continue
    raise SetupError("no port free on 127.0.0.2..4")


def _resolver(dns, interval):
    """The resolver section: dns as the only name server."""
    return {"nameservers": ["127.0.0.1:%d" % dns.port], "interval": interval,
            "timeout": "300ms", "attempts": 1}


def _config(env, dns, servers, interval="1s", extra=None):
    cfg = env.config(extra)
    cfg["upstreams"][0]["servers"] = servers
    cfg["upstreams"][0]["keepalive"] = 0     # every request picks a server afresh
    cfg["resolver"] = _resolver(dns, interval)
    return cfg


def _redis_config(env, dns, port, interval, extra=None):
    """A configuration with Redis given as redis.test:port, resolved by dns."""
    over = dict(extra or {})
    over["redis"] = {"address": "redis.test:%d" % port, "connect_timeout": "500ms",
                     "command_timeout": "500ms"}
    cfg = env.config(over)
    cfg["resolver"] = _resolver(dns, interval)
    return cfg


def _reload(rg, cfg, new):
    """rg.reload(new) on cfg's listeners: (status, document)."""
    new["listeners"] = cfg["listeners"]
    return rg.reload(new)


class _Scene(contextlib.ExitStack):
    """One test's DnsServer and what it starts (tag upstreams, Redis servers,
    gateways), each stopped when the with block ends, however it ends, the
    last started first. port: one port free on 127.0.0.2..4, picked on first use."""

    def __init__(self, env):
        super().__init__()
        self.env = env
        self._port = None
        self.dns = DnsServer()
        self.callback(self.dns.close)

    @property
    def port(self):
        if self._port is None:
            self._port = _upstream_port()
        return self._port

    def tag(self, ip, tag):
        u = TagUpstream(ip, self.port, tag)
        self.callback(u.stop)
        return u

    def redis(self, ip, tag):
        p = _redis(ip, self.port, tag, self.env.tmp)
        self.callback(kill_group, p, 3)
        return p

    def gateway(self, name, cfg):
        gw = self.env.start_gateway(name, cfg)
        self.callback(gw.stop)
        return gw

    def reload_gateway(self, name, cfg):
        rg = ReloadGateway(self.env, name, cfg)
        self.callback(rg.stop)
        return rg


def _where(path, value):
    """ "line:col" of the YAML scalar value in the file path (as the
    configuration errors give it: 1-based, at the scalar's first byte)."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            i = line.find(value)
            if i >= 0:
                return "%d:%d" % (n, i if i and line[i - 1] in "\"'" else i + 1)
    raise SetupError("%r not in %s" % (value, path))


def _get(env, gw):
    """One request on a new connection: (status, body text)."""
    with env.connect(gw) as c:
        r = c.request("GET", "/dns")
        return r.status, r.body.decode(errors="replace")


def _metrics(cfg):
    port = free_port()
    cfg["metrics"] = {"address": "127.0.0.1:%d" % port}
    return port


@test("dns: an upstream name with two addresses spreads requests over both", timeout=40)
def _(env):
    with _Scene(env) as s:
        a, b = s.tag("127.0.0.2", "A"), s.tag("127.0.0.3", "B")
        s.dns.set("api.test", ["127.0.0.2", "127.0.0.3"])
        cfg = _config(env, s.dns, ["api.test:%d" % s.port])
        cfg["workers"] = 1   # one worker's round robin: exactly every other request
        gw = s.gateway("dns-two", cfg)
        got = [_get(env, gw) for _ in range(12)]
        eq(sorted(set(st for st, _ in got)), [200], "statuses")
        eq((a.count, b.count), (6, 6), "requests that reached A and B")


def _move(env, keepalive):
    """The old address keeps serving: only the re-resolution moves requests."""
    with _Scene(env) as s:
        port = s.port
        a = s.tag("127.0.0.2", "A")
        s.dns.set("api.test", ["127.0.0.2"])
        cfg = _config(env, s.dns, ["api.test:%d" % port], interval="1s")
        cfg["upstreams"][0]["keepalive"] = keepalive
        mport = _metrics(cfg)
        gw = s.gateway("dns-move-%d" % keepalive, cfg)
        for _ in range(3):   # with keep-alive: connections to A are pooled
            eq(_get(env, gw), (200, "A"), "before the move")
        changes = metric_value(mport, ADMIN_TOKEN, "portcullis_dns_changes_total")
        s.tag("127.0.0.3", "B")
        s.dns.set("api.test", ["127.0.0.3"])
        check(wait_until(lambda: _get(env, gw) == (200, "B"), 4),
              "requests did not move to the new address within the interval")
        a_before = a.count
        got = [_get(env, gw) for _ in range(5)]
        eq(got, [(200, "B")] * 5, "after the move")
        eq(a.count, a_before, "requests that reached the old address after the move")
        eq(metric_value(mport, ADMIN_TOKEN, "portcullis_dns_changes_total"), changes + 1,
           "portcullis_dns_changes_total")
        check(re.search(r"api\.test:%d now resolves to: 127\.0\.0\.3:%d" % (port, port),
                        gw.log_tail(200, joined=True)),
              "no dns_changed log line: %s" % short(gw.log_tail(10, joined=True), 800))


@test("dns: the upstream name moves to another address: requests follow within the interval", timeout=40)
def _(env):
    _move(env, 0)


@test("dns: the upstream name moves with keep-alive pooling: pooled connections to the old address are not used again", timeout=40)
def _(env):
    _move(env, 8)


@test("dns: a connect failure re-resolves the name at once, long before the interval", timeout=40)
def _(env):
    with _Scene(env) as s:
        a = s.tag("127.0.0.2", "A")
        s.dns.set("api.test", ["127.0.0.2"])
        gw = s.gateway("dns-kick", _config(env, s.dns, ["api.test:%d" % s.port], interval="1h"))
        eq(_get(env, gw), (200, "A"), "before the move")
        s.tag("127.0.0.3", "B")
        s.dns.set("api.test", ["127.0.0.3"])
        a.stop()
        first = _get(env, gw)
        eq(first[0], 502, "the request to the stopped address (%s)" % short(first[1]))
        eq(json.loads(first[1]).get("error"), "upstream_unavailable", "the 502's error code")
        check(wait_until(lambda: _get(env, gw) == (200, "B"), 3),
              "the connect failure did not re-resolve the name")


@test("dns: a name that stops resolving keeps its last addresses, logged once and counted", timeout=40)
def _(env):
    with _Scene(env) as s:
        port, dns = s.port, s.dns
        s.tag("127.0.0.2", "A")
        dns.set("api.test", ["127.0.0.2"])
        cfg = _config(env, dns, ["api.test:%d" % port], interval="1s")
        mport = _metrics(cfg)
        gw = s.gateway("dns-gone", cfg)
        eq(_get(env, gw), (200, "A"), "before")
        before = metric_value(mport, ADMIN_TOKEN, "portcullis_dns_failures_total")
        dns.set("api.test", None)   # NXDOMAIN from now on
        check(wait_until(lambda: metric_value(mport, ADMIN_TOKEN,
                                              "portcullis_dns_failures_total") >= before + 3, 8),
              "three failed re-resolutions were not counted")
        eq([_get(env, gw) for _ in range(3)], [(200, "A")] * 3, "served by the last addresses")
        lines = [ln for ln in gw.log_tail(400) if 'cannot resolve "api.test"' in ln]
        eq(len(lines), 1, "WARN lines for the name that stopped resolving (%r)" % lines)
        check(" warn " in lines[0] and "event=dns_failed name=api.test:%d" % port in lines[0]
              and 'cannot resolve "api.test": no such name; keeping its last addresses'
              in lines[0],
              "the line: %r" % lines[0])
        dns.set("api.test", ["127.0.0.2"])
        check(wait_until(lambda: "api.test:%d resolves again, to: 127.0.0.2:%d" % (port, port)
                         in gw.log_tail(400, joined=True), 4),
              "no line when the name resolves again")


@test("dns: a name that does not resolve at start: --check and the start exit 2 with file:line:col", timeout=40)
def _(env):
    with _Scene(env) as s:
        s.dns.set("api.test", ["127.0.0.2"])
        port = s.port
        cfg = _config(env, s.dns, ["api.test:%d" % port, "nosuch.test:%d" % port])
        rc, out = config_check(env, cfg, "dns-check")
        path = os.path.join(env.tmp, "dns-check.yaml")
        eq(rc, 2, "--check exit status (%s)" % short(out, 400))
        line = [ln for ln in out.splitlines() if "nosuch.test" in ln]
        check(line and re.match(re.escape("%s:%s" % (path, _where(path, "nosuch.test:%d" % port)))
                                + r': upstreams\[0\]\.servers\[1\]: '
                                r'cannot resolve "nosuch\.test": ', line[0]),
              "--check output: %s" % short(out, 600))
        check("api.test" not in out, "the name that resolves was reported: %s" % short(out, 400))
        t0 = time.monotonic()
        r = subprocess.run([BINARY, "-c", path], capture_output=True, text=True, timeout=20)
        eq(r.returncode, 2, "start exit status (%s)" % short(r.stderr, 400))
        check('upstreams[0].servers[1]: cannot resolve "nosuch.test"' in r.stdout + r.stderr,
              "start output: %s" % short(r.stdout + r.stderr, 600))
        check(time.monotonic() - t0 < 5, "the start took %.1fs" % (time.monotonic() - t0))


@test("dns: a reload with a name that does not resolve is refused, the old config serves", timeout=40)
def _(env):
    with _Scene(env) as s:
        port, dns = s.port, s.dns
        s.tag("127.0.0.2", "A")
        dns.set("api.test", ["127.0.0.2"])
        cfg = _config(env, dns, ["api.test:%d" % port])
        rg = s.reload_gateway("dns-reload", cfg)
        eq(_get(env, rg.gw), (200, "A"), "before the reload")
        bad = _config(env, dns, ["api.test:%d" % port, "nosuch.test:%d" % port])
        status, doc = _reload(rg, cfg, bad)
        eq(status, 422, "reload status (%s)" % short(str(doc), 400))
        eq(doc.get("error"), "reload_failed", "reload error code")
        errs = doc.get("errors") or []
        at = re.escape("%s:%s" % (rg.config_path, _where(rg.config_path, "nosuch.test:%d" % port)))
        check(len(errs) == 1 and re.match(at + r': upstreams\[0\]\.servers\[1\]: cannot '
                                           r'resolve "nosuch\.test": ', errs[0]),
              "reload errors: %r" % errs)
        eq(_get(env, rg.gw), (200, "A"), "after the refused reload")
        # the same file once the name resolves: applied
        s.tag("127.0.0.3", "B")
        dns.set("nosuch.test", ["127.0.0.3"])
        status, doc = rg.reload(bad)
        eq(status, 200, "reload once the name resolves (%s)" % short(str(doc), 400))
        got = set(_get(env, rg.gw)[1] for _ in range(8))
        eq(got, {"A", "B"}, "servers after the reload")


def _redis(ip, port, tag, tmp):
    d = os.path.join(tmp, "redis-%s" % tag)
    os.makedirs(d, exist_ok=True)
    log = open(os.path.join(d, "redis.log"), "ab")
    p = spawn(["redis-server", "--port", str(port), "--bind", ip, "--save", "", "--appendonly",
               "no", "--dir", d], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    kill_group(p, 1)
    raise SetupError("redis-server on %s:%d did not start" % (ip, port))


def _redis_clients(ip, port):
    out = subprocess.run(["redis-cli", "-h", ip, "-p", str(port), "CLIENT", "LIST"],
                         capture_output=True, text=True, timeout=5).stdout
    return len([ln for ln in out.splitlines() if "cmd=client" not in ln and ln.strip()])


@test("dns: Redis given as a name whose address changes: the revocation mirror reconnects to the new one", timeout=60)
def _(env):
    with _Scene(env) as s:
        port = s.port
        r1 = s.redis("127.0.0.2", "one")
        s.dns.set("redis.test", ["127.0.0.2"])
        gw = s.gateway("dns-redis", _redis_config(env, s.dns, port, "1h"))
        check(wait_until(lambda: _redis_clients("127.0.0.2", port) >= 2, 5),
              "the gateway did not connect to the first Redis")
        with env.connect(gw) as c:
            eq(c.request("GET", "/").status, 200, "a request with the first Redis")
        s.redis("127.0.0.3", "two")
        s.dns.set("redis.test", ["127.0.0.3"])
        kill_group(r1, 3)
        check(wait_until(lambda: _redis_clients("127.0.0.3", port) >= 2, 10),
              "the mirror did not reconnect to the new address: %s"
              % short(gw.log_tail(10, joined=True), 800))
        with env.connect(gw) as c:
            eq(c.request("GET", "/").status, 200, "a request with the second Redis")


@test("dns: the http attestation verifier given by name: issuance reaches it; a name that does not resolve is a config error", timeout=60)
def _(env):
    from certs import Minter
    from testkit import Verifier, issuance_config, post_json
    with _Scene(env) as s:
        v = Verifier()
        s.callback(v.stop)
        s.dns.set("verifier.test", ["127.0.0.1"])
        cfg = _config(env, s.dns, ["127.0.0.1:%d" % env.upstream_port])
        cfg["issuance"] = issuance_config(env, {
            "huawei": {"provider": "http", "url": "http://verifier.test:%d/verify" % v.port}})
        bad = dict(cfg, issuance=issuance_config(env, {
            "huawei": {"provider": "http", "url": "http://nosuch.test:%d/verify" % v.port}}))
        rc, out = config_check(env, bad, "dns-verifier-bad")
        eq(rc, 2, "--check exit status (%s)" % short(out, 400))
        bad_path = os.path.join(env.tmp, "dns-verifier-bad.yaml")
        at = re.escape("%s:%s" % (bad_path, _where(bad_path, "http://nosuch.test:%d/verify" % v.port)))
        check(re.search(at + r': issuance\.platforms\.huawei\.url: cannot resolve '
                        r'"nosuch\.test": no such name', out), "--check output: %s" % short(out, 600))
        gw = s.gateway("dns-verifier", cfg)
        with env.connect(gw, "bootstrap") as c:
            r = post_json(c, "/certificates/challenge", {})
        eq(r.status, 200, "challenge (%s)" % short(r.body))
        nonce = r.json()["nonce"]
        _key, csr = Minter(env, "dns-issuance").csr_pem("dnsphone", "/CN=dnsphone")
        with env.connect(gw, "bootstrap") as c:
            r = post_json(c, "/certificates/issue", {"csr": csr, "platform": "huawei",
                                                     "integrity_token": "allow-1", "nonce": nonce})
        eq(r.status, 201, "issue through the verifier reached by name (%s)" % short(r.body, 300))
        eq(len(v.seen), 1, "requests the verifier got")


@test("dns: a reload that changes the resolver section is refused (restart-only)", timeout=40)
def _(env):
    with _Scene(env) as s:
        cfg = _config(env, s.dns, ["127.0.0.1:%d" % env.upstream_port], interval="30s")
        rg = s.reload_gateway("dns-resolver-reload", cfg)
        new = _config(env, s.dns, ["127.0.0.1:%d" % env.upstream_port], interval="10s")
        status, doc = _reload(rg, cfg, new)
        eq(status, 422, "reload status (%s)" % short(str(doc), 400))
        eq([e.split(": ", 1)[1] for e in doc.get("errors") or []],
           ["resolver.interval: changed; this key needs a restart (the reload was refused)"],
           "reload errors")


@test("dns: a Redis name with a dead and a live address: the mirror tries them in turn", timeout=40)
def _(env):
    with _Scene(env) as s:
        port = s.port
        s.redis("127.0.0.3", "live")
        s.dns.set("redis.test", ["127.0.0.2", "127.0.0.3"])   # nothing listens on 127.0.0.2
        gw = s.gateway("dns-redis-turn", _redis_config(env, s.dns, port, "1h"))
        check(wait_until(lambda: _redis_clients("127.0.0.3", port) >= 2, 10),
              "the mirror did not reach the live address: %s" % short(gw.log_tail(10, joined=True), 800))
        check(wait_until(lambda: "revocation mirror current" in gw.log_tail(100, joined=True), 5),
              "the mirror was not loaded from the live address")
        with env.connect(gw) as c:
            eq(c.request("GET", "/").status, 200, "a request once the mirror is loaded")


@test("dns: a name with more addresses than kept, answered in rotating order: no change on re-resolve", timeout=40)
def _(env):
    with _Scene(env) as s:
        dns = s.dns
        dns.rotate = True
        dns.set("many.test", ["127.0.1.%d" % i for i in range(1, 11)])
        cfg = _config(env, dns, ["many.test:%d" % s.port], interval="1s")
        mport = _metrics(cfg)
        gw = s.gateway("dns-many", cfg)
        asked = dns.count("many.test")
        time.sleep(4)
        check(dns.count("many.test") >= asked + 3,
              "the name was not re-resolved every second (%d -> %d queries)"
              % (asked, dns.count("many.test")))
        eq(metric_value(mport, ADMIN_TOKEN, "portcullis_dns_changes_total"), 0,
           "portcullis_dns_changes_total")
        eq([ln for ln in gw.log_tail(400) if "now resolves to" in ln], [], "dns_changed lines")


@test("dns: a name a reload removed is no longer resolved or warned about", timeout=40)
def _(env):
    with _Scene(env) as s:
        port, dns = s.port, s.dns
        s.tag("127.0.0.2", "A")
        s.tag("127.0.0.3", "B")
        dns.set("old.test", ["127.0.0.2"])
        dns.set("new.test", ["127.0.0.3"])
        cfg = _config(env, dns, ["old.test:%d" % port], interval="1s")
        rg = s.reload_gateway("dns-removed", cfg)
        eq(_get(env, rg.gw), (200, "A"), "before the reload")
        new = _config(env, dns, ["new.test:%d" % port], interval="1s")
        status, doc = _reload(rg, cfg, new)
        eq(status, 200, "reload (%s)" % short(str(doc), 400))
        eq([_get(env, rg.gw) for _ in range(3)], [(200, "B")] * 3, "after the reload")
        time.sleep(1.5)   # the old generation retires (no connection holds it)
        dns.set("old.test", None)   # NXDOMAIN from now on
        asked = dns.count("old.test")
        mark = len(rg.gw.log_tail(10000))
        time.sleep(3)
        eq(dns.count("old.test"), asked, "queries for the removed name after the reload")
        eq([ln for ln in rg.gw.log_tail(10000)[mark:] if "old.test" in ln], [],
           "log lines about the removed name")
        check(dns.count("new.test") >= 2, "the kept name is still re-resolved")


@test("dns: an edited hosts file and a reload: the control loop reads it again, the old address does not come back", timeout=40)
def _(env):
    with _Scene(env) as s:
        s.tag("127.0.0.2", "A")
        s.tag("127.0.0.3", "B")
        hosts = os.path.join(env.tmp, "dns-hosts-edit")
        with open(hosts, "w") as f:
            f.write("127.0.0.2 api.test\n")
        cfg = _config(env, s.dns, ["api.test:%d" % s.port], interval="1s")
        cfg["resolver"]["hosts_file"] = hosts
        rg = s.reload_gateway("dns-hosts-edit", cfg)
        eq([_get(env, rg.gw) for _ in range(3)], [(200, "A")] * 3, "before the edit")
        with open(hosts + ".new", "w") as f:
            f.write("127.0.0.3 api.test\n")
        os.rename(hosts + ".new", hosts)
        status, doc = rg.reload(cfg)
        eq(status, 200, "reload (%s)" % short(str(doc), 400))
        eq([_get(env, rg.gw) for _ in range(6)], [(200, "B")] * 6, "right after the reload")
        time.sleep(2.5)   # more than two re-resolve rounds
        eq([_get(env, rg.gw) for _ in range(6)], [(200, "B")] * 6, "2.5s after the reload")


@test("dns: SIGTERM while a re-resolution waits on a silent name server: prompt exit, nothing leaked", timeout=60)
def _(env):
    with _Scene(env) as s:
        dns = s.dns
        dns.set("api.test", ["127.0.0.2"])
        cfg = _config(env, dns, ["api.test:%d" % s.port], interval="1s")
        cfg["resolver"]["timeout"] = "10s"
        gw = s.gateway("dns-stop-inflight", cfg)
        dns.silent = True
        before = dns.queries
        check(wait_until(lambda: dns.queries > before, 5), "no re-resolution was sent")
        t0 = time.monotonic()
        rc = gw.stop()
        took = time.monotonic() - t0
        eq(rc, 0, "exit status")
        check(took < 5, "the stop took %.1fs" % took)
        eq(gw.sanitizer_reports(), [], "sanitizer reports")


@test("dns: Redis moves while the old server stays up: the mirror and the worker's client follow the name", timeout=60)
def _(env):
    with _Scene(env) as s:
        port = s.port
        s.redis("127.0.0.2", "stay-one")
        s.redis("127.0.0.3", "stay-two")
        s.dns.set("redis.test", ["127.0.0.2"])
        cfg = _redis_config(env, s.dns, port, "1s",
                            {"workers": 1, "revocation": {"resync_interval": "1s"}})
        cfg["rate_limits"] = [{"name": "g", "key": "ip", "rate": "1000/m", "scope": "global",
                               "on_redis_unavailable": "fail_closed"}]
        cfg["routes"][1]["rate_limits"] = ["g"]
        gw = s.gateway("dns-redis-stay", cfg)
        check(wait_until(lambda: _redis_clients("127.0.0.2", port) == 2, 5),
              "the mirror did not connect to the first Redis")
        with env.connect(gw) as c:
            eq(c.request("GET", "/").status, 200, "a request counted in the first Redis")
        eq(_redis_clients("127.0.0.2", port), 3, "clients of the first Redis (mirror 2, worker 1)")
        s.dns.set("redis.test", ["127.0.0.3"])
        check(wait_until(lambda: _redis_clients("127.0.0.3", port) == 2, 6),
              "the mirror did not follow the name: %s" % short(gw.log_tail(10, joined=True), 800))
        with env.connect(gw) as c:
            eq(c.request("GET", "/").status, 200, "a request once the name moved")
        check(wait_until(lambda: _redis_clients("127.0.0.2", port) == 0, 3),
              "clients left on the first Redis: %d" % _redis_clients("127.0.0.2", port))
        eq(_redis_clients("127.0.0.3", port), 3, "clients of the second Redis (mirror 2, worker 1)")
        check(re.search(r"Redis redis\.test:%d no longer resolves to 127\.0\.0\.2:%d: reconnecting"
                        % (port, port), gw.log_tail(200, joined=True)), "no line about the move")
