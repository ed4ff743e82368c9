"""The admin API (gateway/admin.c) and the revoke / unrevoke / revocations
subcommands (gateway/cli.c): what they write to Redis and how they answer.

Each test owns a redis-server (so it can be stopped) and a gateway with an
`admin` section and the token in its environment. Enforcement of
revocations on TLS connections is tested in test_60_revocation.py."""

import http.client
import json
import os
import socket
import subprocess
import time

from harness import (BINARY, check, eq, fail, free_port, kill_group, spawn, test, to_yaml,
                     wait_tcp)
from testkit import RedisServer

KEY = "portcullis:revoked"
CHANNEL = "portcullis:revocations"
TOKEN = "admin-token-0123456789abcdef"
FP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class _Subscriber:
    """A raw RESP connection subscribed to the revocation channel."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(b"SUBSCRIBE %s\r\n" % CHANNEL.encode())
        self._wait_for(b"subscribe")

    def _wait_for(self, needle, timeout=3.0):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return False
            if not data:
                return False
            self.buf += data
        return True

    def saw(self, message, timeout=3.0):
        return self._wait_for(b"\r\n" + message.encode() + b"\r\n", timeout)

    def close(self):
        self.sock.close()


class _Admin:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, token=TOKEN, raw=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body, ensure_ascii=False).encode()
                                            if body is not None
                                            else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), payload
        finally:
            c.close()

    def json(self, method, path, body=None, **kw):
        status, headers, payload = self.request(method, path, body, **kw)
        try:
            doc = json.loads(payload.decode())
        except ValueError:
            fail("%s %s: %d body is not JSON: %r" % (method, path, status, payload[:200]))
        check("application/json" in headers.get("content-type", ""),
              "%s %s: Content-Type %r" % (method, path, headers.get("content-type")))
        return status, headers, doc


def _error(status, doc, want_status, what):
    eq(status, want_status, what + ": status")
    check(isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"] and
          isinstance(doc.get("message"), str) and doc["message"],
          "%s: not a JSON error: %r" % (what, doc))
    return doc


def _setup(env, name, redis=None):
    redis = redis or RedisServer(env, "admin-redis").start()
    admin_port = free_port()
    cfg = env.config({
        "redis": {"address": "127.0.0.1:%d" % redis.port, "connect_timeout": "500ms",
                  "command_timeout": "500ms"},
        "admin": {"listen": "127.0.0.1:%d" % admin_port, "max_body_bytes": "1k"},
    })
    try:
        gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
        wait_tcp(admin_port, gw.proc, 10, "admin listener")
    except BaseException:
        redis.stop()
        raise
    return redis, gw, _Admin(admin_port)


def _cli(gw, *args):
    r = subprocess.run([BINARY] + list(args[:1]) + ["-c", gw.config_path] + list(args[1:]),
                       capture_output=True, text=True, timeout=20)
    return r.returncode, r.stdout, r.stderr


@test("admin: 401 JSON without a token or with a wrong one")
def _(env):
    redis, gw, admin = _setup(env, "admin-auth")
    try:
        for token, what in ((None, "no token"), ("wrong-token", "wrong token"),
                            (TOKEN + "x", "token with extra byte"), (TOKEN[:-1], "prefix")):
            for method, path in (("GET", "/admin/health"), ("GET", "/admin/revocations"),
                                 ("POST", "/admin/revocations"), ("GET", "/nope")):
                status, headers, doc = admin.json(method, path, token=token,
                                                  body={"fingerprint": FP}
                                                  if method == "POST" else None)
                _error(status, doc, 401, "%s %s with %s" % (method, path, what))
                check(headers.get("www-authenticate", "").startswith("Bearer"),
                      "%s: WWW-Authenticate %r" % (what, headers.get("www-authenticate")))
        eq(redis.cli("SCARD", KEY), "0", "set size after refused writes")
        log = "\n".join(gw.log_tail(200))
        check(TOKEN not in log and "wrong-token" not in log, "a token was logged")
    finally:
        gw.stop()
        redis.stop()


@test("admin: POST revokes (201), writes set, meta and publishes")
def _(env):
    redis, gw, admin = _setup(env, "admin-post")
    sub = _Subscriber(redis.port)
    try:
        status, _, doc = admin.json("POST", "/admin/revocations",
                                    {"class": "device", "serial": "00:1A:2b",
                                     "reason": "lost phone"})
        eq(status, 201, "POST status")
        eq(doc, {"entry": "device:1a2b", "revoked": True}, "POST body")
        eq(redis.cli("SISMEMBER", KEY, "device:1a2b"), "1", "SISMEMBER")
        meta = json.loads(redis.cli("HGET", KEY + ":meta", "device:1a2b"))
        eq(meta.get("reason"), "lost phone", "meta reason")
        check(abs(meta.get("revoked_at", 0) - time.time()) < 60, "meta revoked_at %r" % meta)
        check(sub.saw("+device:1a2b"), "no +device:1a2b published on %s: %r" % (CHANNEL, sub.buf))

        status, _, doc = admin.json("POST", "/admin/revocations",
                                    {"fingerprint": FP.upper()[:2] + ":" + FP.upper()[2:]})
        eq((status, doc), (201, {"entry": FP, "revoked": True}), "POST fingerprint")
        eq(redis.cli("SISMEMBER", KEY, FP), "1", "SISMEMBER fingerprint")
        check(sub.saw("+" + FP), "no +fingerprint published")

        log = "\n".join(gw.log_tail(200))
        check("action=revoke" in log and "device:1a2b" in log and "lost phone" in log and
              "127.0.0.1" in log, "admin action not logged with entry, reason and peer")
        check(TOKEN not in log, "the token was logged")
    finally:
        sub.close()
        gw.stop()
        redis.stop()


@test("admin: malformed requests get 400/404/405/413 JSON with a message")
def _(env):
    redis, gw, admin = _setup(env, "admin-bad")
    try:
        cases = [
            ({"class": "device", "serial": "12g4"}, "hexadecimal"),
            ({"class": "device", "serial": "1123456789abcdef0123456789abcdef012345678"}, "20"),
            ({"class": "Device", "serial": "12"}, "class"),
            ({"fingerprint": "12:34"}, "64 hex"),
            ({"class": "device"}, "serial"),
            ({"serial": "12"}, "class"),
            ({}, "fingerprint"),
            ({"class": "device", "serial": "12", "fingerprint": FP}, "either"),
            ({"class": "device", "serial": 12}, "string"),
            ({"class": "device", "serial": "12", "reason": "r" * 201}, "200"),
            ({"class": "device", "serial": "12", "reason": 5}, "reason"),
        ]
        for body, words in cases:
            status, _, doc = admin.json("POST", "/admin/revocations", body)
            _error(status, doc, 400, "POST %r" % (body,))
            check(words in doc["message"], "POST %r: message %r lacks %r"
                  % (body, doc["message"], words))
        for raw in (b"{", b"[1,2]", b"not json", b""):
            status, _, doc = admin.json("POST", "/admin/revocations", raw=raw)
            _error(status, doc, 400, "POST raw %r" % raw)
        status, _, doc = admin.json("POST", "/admin/revocations",
                                    {"class": "device", "serial": "12", "reason": "é" * 200})
        eq(status, 201, "200 non-ASCII characters are a valid reason")
        eq(redis.cli("SCARD", KEY), "1", "only the valid request wrote")

        status, _, _ = admin.request("POST", "/admin/revocations",
                                     raw=b'{"fingerprint":"' + b"a" * 2000 + b'"}')
        eq(status, 413, "body over admin.max_body_bytes")

        status, _, doc = admin.json("DELETE", "/admin/revocations/device%3Axyz")
        _error(status, doc, 400, "DELETE bad entry")
        check("hexadecimal" in doc["message"], "DELETE bad entry message %r" % doc["message"])
        for q in ("count=0", "count=1001", "count=abc", "cursor=x", "cursor=-1"):
            status, _, doc = admin.json("GET", "/admin/revocations?" + q)
            _error(status, doc, 400, "GET ?%s" % q)
        status, _, doc = admin.json("GET", "/admin/nothing")
        _error(status, doc, 404, "unknown path")
        status, _, doc = admin.json("GET", "/")
        _error(status, doc, 404, "root path")
        for method, path in (("PUT", "/admin/revocations"), ("POST", "/admin/health"),
                             ("GET", "/admin/revocations/device:12"),
                             ("PATCH", "/admin/revocations")):
            status, headers, doc = admin.json(method, path)
            _error(status, doc, 405, "%s %s" % (method, path))
            check(headers.get("allow"), "%s %s: 405 without Allow" % (method, path))
    finally:
        gw.stop()
        redis.stop()


@test("admin: GET lists entries with reasons; DELETE lifts; health answers")
def _(env):
    redis, gw, admin = _setup(env, "admin-list")
    sub = _Subscriber(redis.port)
    try:
        for i in range(25):
            status, _, _ = admin.json("POST", "/admin/revocations",
                                      {"class": "device", "serial": "%x" % (0x100 + i),
                                       "reason": "batch %d" % i})
            eq(status, 201, "POST %d" % i)
        status, _, doc = admin.json("POST", "/admin/revocations", {"fingerprint": FP})
        eq(status, 201, "POST fingerprint without reason")

        seen, cursor, rounds = {}, "0", 0
        while True:
            status, _, doc = admin.json("GET", "/admin/revocations?cursor=%s&count=7" % cursor)
            eq(status, 200, "GET status")
            check(isinstance(doc.get("entries"), list) and isinstance(doc.get("cursor"), str),
                  "GET body %r" % doc)
            for e in doc["entries"]:
                seen[e["entry"]] = e
            cursor, rounds = doc["cursor"], rounds + 1
            if cursor == "0" or rounds > 100:
                break
        eq(cursor, "0", "listing ends with cursor 0")
        eq(len(seen), 26, "entries listed")
        e = seen.get("device:105")
        check(e is not None and e["reason"] == "batch 5" and isinstance(e["revoked_at"], int),
              "entry device:105: %r" % (e,))
        check(seen[FP]["reason"] is None, "no reason: null, got %r" % (seen[FP],))

        status, _, doc = admin.json("DELETE", "/admin/revocations/device%3A0x0105")
        eq((status, doc), (200, {"entry": "device:105", "revoked": False}), "DELETE by path")
        eq(redis.cli("SISMEMBER", KEY, "device:105"), "0", "lifted entry gone from the set")
        eq(redis.cli("HEXISTS", KEY + ":meta", "device:105"), "0", "lifted entry's meta gone")
        check(sub.saw("-device:105"), "no -device:105 published")

        status, _, doc = admin.json("DELETE", "/admin/revocations",
                                    {"fingerprint": FP.upper()})
        eq((status, doc), (200, {"entry": FP, "revoked": False}), "DELETE with a JSON body")
        eq(redis.cli("SISMEMBER", KEY, FP), "0", "lifted fingerprint gone")
        check(sub.saw("-" + FP), "no -fingerprint published")

        status, _, doc = admin.json("DELETE", "/admin/revocations/device:999")
        eq((status, doc), (200, {"entry": "device:999", "revoked": False}),
           "DELETE of an entry that is not revoked")
        eq(redis.cli("SCARD", KEY), "24", "set size after lifts")

        status, _, doc = admin.json("GET", "/admin/health")
        eq(status, 200, "health status")
        rev = doc.get("revocation")
        check(isinstance(rev, dict) and "state" in rev and "entries" in rev and
              "usable" in rev, "health body %r" % doc)
        check(any("action=unrevoke" in line for line in gw.log_tail(200)), "unrevoke not logged")
    finally:
        sub.close()
        gw.stop()
        redis.stop()


@test("admin: Redis down gives 503 redis_unavailable; works again when it is back")
def _(env):
    redis, gw, admin = _setup(env, "admin-down")
    try:
        status, _, _ = admin.json("POST", "/admin/revocations", {"class": "device", "serial": "1"})
        eq(status, 201, "POST with Redis up")
        redis.stop()
        t0 = time.monotonic()
        for method, path, body in (("POST", "/admin/revocations", {"class": "device", "serial": "2"}),
                                   ("DELETE", "/admin/revocations/device:1", None),
                                   ("GET", "/admin/revocations", None)):
            status, _, doc = admin.json(method, path, body)
            _error(status, doc, 503, "%s %s with Redis down" % (method, path))
            eq(doc["error"], "redis_unavailable", "error code")
        check(time.monotonic() - t0 < 10, "503s took %.1fs" % (time.monotonic() - t0))
        status, _, doc = admin.json("GET", "/admin/health")
        eq(status, 200, "health needs no Redis")
        check(gw.alive(), "gateway died with Redis down")

        redis.start()          # same port, empty data set
        deadline, status = time.monotonic() + 5, 0
        while time.monotonic() < deadline:
            status, _, doc = admin.json("POST", "/admin/revocations",
                                        {"class": "device", "serial": "3"})
            if status == 201:
                break
            time.sleep(0.2)
        eq(status, 201, "POST after Redis came back")
        eq(redis.cli("SISMEMBER", KEY, "device:3"), "1", "written after reconnect")
    finally:
        gw.stop()
        redis.stop()


@test("admin: a Redis that accepts but never answers gives 503 within the timeouts")
def _(env):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)

    class _Silent:
        port = lsock.getsockname()[1]

        def stop(self):
            lsock.close()

    silent = _Silent()
    admin_port = free_port()
    cfg = env.config({
        "redis": {"address": "127.0.0.1:%d" % silent.port, "connect_timeout": "300ms",
                  "command_timeout": "300ms"},
        "admin": {"listen": "127.0.0.1:%d" % admin_port},
    })
    gw = None
    try:
        gw = env.start_gateway("admin-silent", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
        wait_tcp(admin_port, gw.proc, 10, "admin listener")
        admin = _Admin(admin_port)
        t0 = time.monotonic()
        status, _, doc = admin.json("POST", "/admin/revocations", {"class": "device", "serial": "4"})
        elapsed = time.monotonic() - t0
        _error(status, doc, 503, "POST to a silent Redis")
        check(elapsed < 3, "answer took %.1fs" % elapsed)
        status, _, doc = admin.json("GET", "/admin/health")
        eq(status, 200, "admin still answers")
    finally:
        if gw:
            gw.stop()
        silent.stop()


@test("admin: the gateway refuses to start without the token variable")
def _(env):
    redis = RedisServer(env, "admin-redis").start()
    try:
        cfg = env.config({"redis": {"address": "127.0.0.1:%d" % redis.port},
                          "admin": {"listen": "127.0.0.1:%d" % free_port(),
                                    "token_env": "PORTCULLIS_TEST_NO_SUCH_TOKEN"}})
        path = os.path.join(env.tmp, "gw-admin-notoken.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        environ = dict(os.environ, PORTCULLIS_TEST_NO_SUCH_TOKEN="")
        proc = spawn([BINARY, "-c", path], cwd=env.tmp, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, env=environ)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(proc, 1)
            fail("gateway kept running without an admin token")
        check(proc.returncode != 0, "gateway exited 0 without an admin token")
        text = out.decode("utf-8", "replace")
        check("PORTCULLIS_TEST_NO_SUCH_TOKEN" in text,
              "startup error does not name the variable: %r" % text[-300:])
    finally:
        redis.stop()


@test("cli: revoke, unrevoke and revocations against Redis")
def _(env):
    redis, gw, admin = _setup(env, "admin-cli")
    sub = _Subscriber(redis.port)
    try:
        rc, out, err = _cli(gw, "revoke", "--class", "device", "--serial", "0x00AB:CD",
                            "--reason", "stolen laptop")
        eq(rc, 0, "revoke exit status (stderr %r)" % err)
        check("device:abcd" in out, "revoke output %r" % out)
        eq(redis.cli("SISMEMBER", KEY, "device:abcd"), "1", "CLI revoke in the set")
        check(sub.saw("+device:abcd"), "CLI revoke not published")
        meta = json.loads(redis.cli("HGET", KEY + ":meta", "device:abcd"))
        eq(meta.get("reason"), "stolen laptop", "CLI meta reason")

        rc, out, err = _cli(gw, "revoke", "--fingerprint", FP.upper())
        eq(rc, 0, "revoke by fingerprint (stderr %r)" % err)

        rc, out, err = _cli(gw, "revocations", "--count", "1000")
        eq(rc, 0, "revocations exit status (stderr %r)" % err)
        lines = out.strip().splitlines()
        check(lines and lines[-1] == "next cursor: 0", "revocations last line %r" % lines[-1:])
        body = "\n".join(lines[:-1])
        check("device:abcd" in body and "stolen laptop" in body and FP in body,
              "revocations output %r" % out)
        eq(len(lines) - 1, 2, "one line per entry")

        # the admin API sees what the CLI wrote, and the other way round
        status, _, doc = admin.json("GET", "/admin/revocations?count=1000")
        eq(sorted(e["entry"] for e in doc["entries"]), sorted(["device:abcd", FP]), "API list")

        rc, out, err = _cli(gw, "unrevoke", "--class", "device", "--serial", "abcd")
        eq(rc, 0, "unrevoke exit status (stderr %r)" % err)
        eq(redis.cli("SISMEMBER", KEY, "device:abcd"), "0", "CLI unrevoke removed it")
        check(sub.saw("-device:abcd"), "CLI unrevoke not published")

        for args, words in ((["revoke", "--class", "device", "--serial", "xyz"], "hexadecimal"),
                            (["revoke", "--fingerprint", "1234"], "64 hex"),
                            (["revoke", "--class", "device"], "--serial"),
                            (["unrevoke", "--class", "device", "--serial", "1",
                              "--fingerprint", FP], "either"),
                            (["revocations", "--count", "0"], "1..1000"),
                            (["revocations", "--cursor", "abc"], "cursor")):
            rc, out, err = _cli(gw, *args)
            eq(rc, 2, "%s exit status" % args)
            check(words in err, "%s: stderr %r lacks %r" % (args, err, words))

        r = subprocess.run([BINARY, "revocations", "-c", os.path.join(env.tmp, "missing.yaml")],
                           capture_output=True, text=True, timeout=20)
        eq(r.returncode, 2, "missing config exit status")
        check("missing.yaml" in r.stderr, "config error not printed: %r" % r.stderr)

        redis.stop()
        rc, out, err = _cli(gw, "revoke", "--class", "device", "--serial", "1")
        eq(rc, 1, "revoke with Redis down: exit status")
        check("Redis" in err and str(redis.port) in err, "Redis error message %r" % err)
        rc, out, err = _cli(gw, "revocations")
        eq(rc, 1, "revocations with Redis down: exit status")
    finally:
        sub.close()
        gw.stop()
        redis.stop()


@test("admin: revoke by device_id is validated (device id, exclusivity); works without issuance")
def _(env):
    redis, gw, admin = _setup(env, "admin-device")
    try:
        for body, code, words in (
                ({"device_id": "bad id!"}, "invalid_device_id", "device_id"),
                ({"device_id": ""}, "invalid_device_id", "device_id"),
                ({"device_id": "x" * 129}, "invalid_device_id", "128"),
                ({"device_id": 12}, "invalid_device_id", "string"),
                ({"device_id": "abc", "class": "device", "serial": "12"}, "invalid_request",
                 "alone"),
                ({"device_id": "abc", "fingerprint": FP}, "invalid_request", "alone"),
                ({"device_id": "abc", "reason": "r" * 201}, "invalid_reason", "200")):
            status, _, doc = admin.json("POST", "/admin/revocations", body)
            _error(status, doc, 400, "POST %r" % (body,))
            eq(doc["error"], code, "POST %r: error code" % (body,))
            check(words in doc["message"], "POST %r: message %r lacks %r"
                  % (body, doc["message"], words))
        eq(redis.cli("SCARD", KEY), "0", "nothing written")

        for args, words in ((["revoke", "--device-id", "bad id!"], "1..128"),
                            (["revoke", "--device-id", "abc", "--class", "device", "--serial",
                              "1"], "alone"),
                            (["unrevoke", "--device-id", "abc", "--reason", "x"], "--reason"),
                            (["revocations", "--device-id", "abc"], "only -c")):
            rc, out, err = _cli(gw, *args)
            eq(rc, 2, "%s exit status" % args)
            check(words in err, "%s: stderr %r lacks %r" % (args, err, words))
        eq(redis.cli("SCARD", KEY), "0", "nothing written by the CLI")

        # without issuance the device id itself is revoked (no certificate list)
        dev = "phone-1.a_b:c@d"
        status, _, doc = admin.json("POST", "/admin/revocations", {"device_id": dev})
        eq((status, doc), (200, {"device_id": dev, "entry": "device-id=" + dev,
                                 "revoked": ["device-id=" + dev], "certificates": 0}),
           "POST device_id without issuance")
        eq(redis.cli("SISMEMBER", KEY, "device-id=" + dev), "1", "device entry in the set")
        status, _, doc = admin.json("DELETE", "/admin/revocations", {"device_id": dev})
        eq((status, doc), (200, {"entry": "device-id=" + dev, "revoked": False}),
           "DELETE with a device_id lifts the device entry")
        eq(redis.cli("SCARD", KEY), "0", "device entry lifted")
        rc, out, err = _cli(gw, "revoke", "--device-id", "abc")
        eq(rc, 0, "CLI revoke --device-id without issuance (stderr %r)" % err)
        check("revoked device-id=abc" in out, "CLI output %r" % out)
        rc, out, err = _cli(gw, "unrevoke", "--device-id", "abc")
        eq(rc, 0, "CLI unrevoke --device-id (stderr %r)" % err)
        eq(redis.cli("SCARD", KEY), "0", "CLI lifted the device entry")
    finally:
        gw.stop()
        redis.stop()
