"""Helpers several test modules share beyond harness.py: a redis-server of a
test's own, revocation writes, the admin API, the issuance config and an
attestation verifier, and the exact checks of a refused request. Not a test
module (the runner loads test_*.py only)."""

import http.client
import http.server
import json
import os
import shutil
import ssl
import subprocess
import threading
import time

from harness import (BINARY, REPO, SetupError, build_request, check, check_json_error, eq, fail,
                     free_port, kill_group, short, spawn, to_yaml, wait_tcp)

REV_KEY = "portcullis:revoked"
REV_CHANNEL = "portcullis:revocations"


def redis_cli(port, *args, db=None):
    """redis-cli against 127.0.0.1:port (database db); its stdout. Fails the
    test if redis-cli does."""
    cmd = ["redis-cli", "-p", str(port)] + (["-n", str(db)] if db is not None else [])
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        fail("redis-cli %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def redis_keys(port, pattern, db=None):
    """The keys matching pattern, sorted (SCAN, never KEYS)."""
    out = redis_cli(port, "--scan", "--pattern", pattern, db=db)
    return sorted(k for k in out.split("\n") if k)


def redis_multi(port, *cmds):
    """cmds in one MULTI/EXEC."""
    text = "MULTI\n" + "".join(c + "\n" for c in cmds) + "EXEC\n"
    r = subprocess.run(["redis-cli", "-p", str(port)], input=text, capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0, "redis-cli failed: %s" % r.stderr)


def write_revocation(port, entry, publish=True, op="SADD"):
    """A revocation (SADD) or a lift (SREM) as an operator writes it: the set
    change and, if publish, its message in one MULTI (docs/revocation.md)."""
    cmds = ["%s %s %s" % (op, REV_KEY, json.dumps(entry))]
    if publish:
        sign = "+" if op == "SADD" else "-"
        cmds.append("PUBLISH %s %s" % (REV_CHANNEL, json.dumps(sign + entry)))
    redis_multi(port, *cmds)


class RedisServer:
    """A redis-server of a test's own on loopback (port: a free one unless
    given; rdb_dir: where it keeps dump.rdb). start() returns self."""

    def __init__(self, env, tag="redis", port=None, rdb_dir=None):
        self.port = port or free_port()
        self.dir = rdb_dir or os.path.join(env.tmp, "%s-%d" % (tag, self.port))
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            raise SetupError("redis-server not installed")
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = spawn([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", self.dir, "--dbfilename", "dump.rdb"],
                          stdout=log, stderr=log)
        log.close()
        wait_tcp(self.port, self.proc, 10, "redis-server")
        return self

    def stop(self):
        kill_group(self.proc, 3)
        self.proc = None

    def cli(self, *args):
        return redis_cli(self.port, *args).strip()

    def write(self, entry, publish=True, op="SADD"):
        write_revocation(self.port, entry, publish, op)


def redis_overrides(port, **revocation):
    """Config overrides pointing the gateway at a redis-server on port, with
    short timeouts and a slow resync (revocation: more revocation keys)."""
    rev = {"resync_interval": "30s"}
    rev.update(revocation)
    return {"redis": {"address": "127.0.0.1:%d" % port, "connect_timeout": "500ms",
                      "command_timeout": "500ms"},
            "revocation": rev}


def admin_request(port, token, method, path, body=None):
    """One request to the admin API: (status, parsed JSON body or None if
    empty). body: an object sent as JSON, or bytes sent as they are."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, json.loads(r.read().decode() or "null")
    finally:
        c.close()


def metric_value(port, token, name):
    """The value of the first sample called name in GET /metrics on port
    (admin token token), the exposition parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + token})
        resp = c.getresponse()
        status, text = resp.status, resp.read().decode()
    finally:
        c.close()
    eq(status, 200, "GET /metrics")
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    fail("no %s in the exposition" % name)


def issuing_gateway(env, name, db, routes, limits=None):
    """A gateway on the shared redis-server's database db (flushed first)
    answering the issuance endpoints under /certificates/ (platform huawei,
    refused), with routes and rate_limits (if any)."""
    cfg = env.config({"redis": {"db": db}})
    cfg["routes"] = routes
    if limits:
        cfg["rate_limits"] = limits
    cfg["issuance"] = issuance_config(env, {"huawei": {"provider": "refuse"}})
    redis_cli(env.redis_port, "FLUSHDB", db=db)
    return env.start_gateway(name, cfg)


def issuance_config(env, platforms, **extra):
    """An issuance section signing with the PKI's device CA under /certificates/."""
    cfg = {"path_prefix": "/certificates/", "ca_cert": env.pki("device-ca.crt"),
           "ca_key": env.pki("device-ca.key"), "lifetime": "1d", "nonce_ttl": "1m",
           "platforms": platforms}
    cfg.update(extra)
    return cfg


def _b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def bind_challenge(nonce, csr_pem):
    """The key-binding challenge of docs/issuance.md, computed here with the
    openssl tool (not the gateway's code): (base64url of SHA-256(nonce ||
    SHA-256(SPKI DER)), base64url of SHA-256(SPKI DER)). A CSR openssl cannot
    read (a test's garbage) binds to its own bytes."""
    import hashlib
    pub = subprocess.run(["openssl", "req", "-pubkey", "-noout"], input=csr_pem.encode(),
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True).stdout if pub else b""
    spki = hashlib.sha256(der or csr_pem.encode()).digest()
    return _b64url(hashlib.sha256(nonce.encode() + spki).digest()), _b64url(spki)


def post_json(conn, path, body=b"{}", host="localhost", bearer=None, timeout=None):
    """POST body (bytes, or an object sent as JSON) on conn; the response."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.send(build_request("POST", path, host=host, bearer=bearer, body=data,
                            headers=[("Content-Type", "application/json")]))
    return conn.read_response(timeout=timeout)


class Verifier:
    """An http attestation verifier: allows tokens starting with 'allow' and
    denies others; records the bodies it got in seen. 'allow-slow' waits for
    release() (a slow attestation): arrived is set when one came in."""

    def __init__(self):
        seen = self.seen = []
        self.arrived = threading.Event()
        self.go = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append(body)
                tok = body.get("integrity_token", "")
                if tok == "allow-slow":
                    outer.arrived.set()
                    outer.go.wait(10)
                out = json.dumps({"verdict": "allow", "summary": "ok"} if tok.startswith("allow")
                                 else {"verdict": "deny", "reason": "test says no"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def platform(self):
        """The issuance.platforms entry for it."""
        return {"provider": "http", "url": "http://127.0.0.1:%d/verify" % self.port}

    def release(self):
        self.go.set()

    def stop(self):
        self.go.set()
        self.srv.shutdown()
        self.srv.server_close()


def expect_error(env, resp, before, status, code, what, message=None):
    """resp is the JSON error status/code (and message, if given) and no
    request reached the upstream since it counted before. The body."""
    body = check_json_error(resp, status, what)
    eq(body["error"], code, what + ": error code")
    if message is not None:
        eq(body["message"], message, what + ": message")
    eq(env.upstream_count(), before, what + ": requests that reached the upstream")
    return body


def expect_nonce(env, resp, before, what):
    """resp is a 200 challenge with a nonce, answered by the gateway itself."""
    eq(resp.status, 200, "%s: status (%s)" % (what, short(resp.body)))
    check(isinstance(resp.json().get("nonce"), str), "%s: no nonce: %s" % (what, short(resp.body)))
    eq(env.upstream_count(), before, what + ": requests that reached the upstream")


def config_check(env, cfg, name):
    """portcullis --check on cfg written to env.tmp/<name>.yaml: (exit status,
    stdout + stderr)."""
    f = os.path.join(env.tmp, name + ".yaml")
    with open(f, "w") as fh:
        fh.write(to_yaml(cfg))
    r = subprocess.run([BINARY, "--check", "-c", f], capture_output=True, text=True, timeout=20)
    return r.returncode, r.stdout + r.stderr


def wait_until(cond, timeout):
    """Polls cond every 50 ms for up to timeout seconds; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def cert_ctx(env, crt, key, version=None):
    """A client context presenting crt/key (files outside the PKI), trusting
    the server CA; version pins the TLS version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(env.pki("server-ca.crt"))
    ctx.load_cert_chain(crt, key)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


MINT_JWT = os.path.join(REPO, "build", "mint-jwt")


def jwt_keys(env, subdir, names=("es",)):
    """EC P-256 signing keys <name>.pem in env.tmp/subdir and jwks.json with
    the first (kid k1), made once per run; the folder."""
    d = os.path.join(env.tmp, subdir)
    if not os.path.exists(os.path.join(d, "jwks.json")):
        os.makedirs(d, exist_ok=True)
        for n in names:
            subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                            "-out", os.path.join(d, n + ".pem")], check=True, capture_output=True)
        mint_jwt(os.path.join(d, names[0] + ".pem"), "--write-jwks", os.path.join(d, "jwks.json"))
    return d


def mint_jwt(key, *args, iss="https://issuer.example", aud="api", sub="user-42", exp_in=300):
    """build/mint-jwt: an ES256 token (kid k1) signed with key; its stdout."""
    r = subprocess.run([MINT_JWT, "--key", key, "--alg", "ES256", "--kid", "k1", "--iss", iss,
                        "--aud", aud, "--sub", sub, "--exp-in", str(exp_in)] + list(args),
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        fail("mint-jwt failed: %s" % r.stderr)
    return r.stdout.strip()


MINT_INTEGRITY = os.path.join(REPO, "build", "mint-integrity")


def play_keys(env, subdir):
    """Play Integrity keys (decryption.key, verification.key, signing.pem from
    mint-integrity --gen-keys) in env.tmp/subdir, made once per run; the folder."""
    d = os.path.join(env.tmp, subdir)
    if not os.path.exists(os.path.join(d, "decryption.key")):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run([MINT_INTEGRITY, "--gen-keys", d], capture_output=True, text=True)
        if r.returncode != 0:
            fail("mint-integrity --gen-keys: %s" % r.stderr)
    return d


def play_platform(keys, package, digest):
    """An issuance platform with the play_integrity provider on the keys folder."""
    return {"provider": "play_integrity", "package_name": package,
            "decryption_key_file": os.path.join(keys, "decryption.key"),
            "verification_key_file": os.path.join(keys, "verification.key"),
            "certificate_sha256_digests": [digest]}


def play_token(keys, nonce, csr, package, digest, signing_key=None, verdicts=None,
               timestamp_ms=None):
    """A Play Integrity token (its text) from the keys folder; its nonce is the
    key-binding challenge of nonce and the CSR (docs/issuance.md), or nonce
    itself when csr is None."""
    cmd = [MINT_INTEGRITY, "--decryption-key-file", os.path.join(keys, "decryption.key"),
           "--signing-key", signing_key or os.path.join(keys, "signing.pem"),
           "--nonce", bind_challenge(nonce, csr)[0] if csr is not None else nonce,
           "--package", package, "--cert-digest", digest]
    if verdicts is not None:
        cmd += ["--device-verdicts", verdicts]
    if timestamp_ms is not None:
        cmd += ["--timestamp-ms", str(timestamp_ms)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail("mint-integrity: %s" % r.stderr)
    return r.stdout.strip()


def tree_copy(dest):
    """The working tree's files (tracked and new, not ignored) and the built
    binaries copied to dest, mtimes kept so that make finds them up to date."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    files = [f.decode() for f in files if f and os.path.exists(os.path.join(REPO, f.decode()))]
    subprocess.run(["cp", "-p", "--parents", "-t", dest] + files, cwd=REPO, check=True)
    built = [b for b in ("build/portcullis", "build/portcullis-bench", "build/mint-jwt",
                         "build/mint-integrity", "build/llhttp")
             if os.path.exists(os.path.join(REPO, b))]
    subprocess.run(["cp", "-a", "--parents", "-t", dest] + built, cwd=REPO, check=True)


def example_config(path, gw_port, up_port, redis_port):
    """config/example.yaml on these ports (one worker, a 2s drain), as the
    file is otherwise, written to path; its text."""
    with open(os.path.join(REPO, "config", "example.yaml")) as f:
        text = f.read()
    for old, new in (("127.0.0.1:8443", "127.0.0.1:%d" % gw_port),
                     ("127.0.0.1:9080", "127.0.0.1:%d" % up_port),
                     ("127.0.0.1:6379", "127.0.0.1:%d" % redis_port),
                     ("workers: auto", "workers: 1"), ("drain: 30s", "drain: 2s")):
        check(old in text, "config/example.yaml no longer has %r" % old)
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return text


def start_run_sh(root, config, up_port, redis_port):
    """scripts/run.sh in the tree copy root with config (a name in root), in a
    session of its own, waited on until its banner ends: (process, its output).
    The process is killed when it exited or never printed the banner."""
    out_path = os.path.join(root, "run-stdout.txt")
    environ = dict(os.environ, PORTCULLIS_RUN_CONFIG=config,
                   PORTCULLIS_RUN_UPSTREAM_PORT=str(up_port),
                   PORTCULLIS_RUN_REDIS_PORT=str(redis_port))
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(["bash", os.path.join(root, "scripts", "run.sh")], cwd=root,
                                stdout=out, stderr=subprocess.STDOUT, env=environ,
                                start_new_session=True)
    try:
        deadline = time.time() + 240
        text = ""
        while time.time() < deadline and proc.poll() is None:
            with open(out_path, errors="replace") as f:
                text = f.read()
            if "Ctrl-C stops everything." in text:
                break
            time.sleep(0.2)
        check(proc.poll() is None, "run.sh exited %s: %s" % (proc.returncode, text[-1500:]))
    except BaseException:
        if proc.poll() is None:
            kill_group(proc, 5)
        raise
    return proc, text
