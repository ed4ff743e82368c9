"""Live reload (issue 12): every change applied to a running gateway while
portcullis-bench drives full handshakes and keep-alive requests against it,
with 0 failed requests and 0 refused connections in every case.

Each test owns a gateway with an admin listener (loadgen.ReloadGateway) and
reloads it through POST /admin/reload or SIGHUP. The load goes to an
upstream of its own ("load", route /load/), so env.upstream_count() still
counts only what the test itself sent."""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from certs import Minter, serial_of
from harness import (BINARY, H_SERIAL, REFUSAL_ERRORS, SANITIZED, TIME_FACTOR, Conn,
                     build_request, check, check_identity, eq, fail, free_port, short, test,
                     to_yaml, upstream_info)
from loadgen import (ADMIN_TOKEN, Load, ReloadGateway, check_clean, load_upstream_config,
                     proc_fds, proc_rss_kb)
from testkit import RedisServer, expect_error, jwt_keys, mint_jwt, redis_overrides
from tlsprobe import VERSIONS, client_ctx, verdict

V3_SERVER = """\
[v3_server]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

REVOKED = "SSLV3_ALERT_CERTIFICATE_REVOKED"
NO_CHANGE = {"files": [], "routes_added": [], "routes_removed": [], "routes_changed": [], "classes_changed": [],
             "listeners_added": [], "listeners_removed": []}


def _route(path, upstream="echo", classes=("device",), bearer=True, **extra):
    r = {"path": path, "upstream": upstream, "allow_classes": list(classes),
         "require_bearer": bearer}
    r.update(extra)
    return r


def _routes(*extra):
    """/certificates/ (bootstrap and device, no bearer), /load/ (the load),
    /api/ (the echo upstream), then extra."""
    return [_route("/certificates/", classes=("bootstrap", "device"), bearer=False),
            _route("/load/", upstream="load"),
            _route("/api/")] + list(extra)


def _config(env, port, over=None, routes=None):
    """The base config on listener port with the load upstream and routes."""
    cfg = env.config(over, port=port)
    cfg["upstreams"] = cfg["upstreams"] + [load_upstream_config(env)]
    cfg["routes"] = routes if routes is not None else _routes()
    return cfg


def _dir(env, name):
    d = os.path.join(env.tmp, "reload-" + name)
    os.makedirs(d, exist_ok=True)
    return d


def _load(env, rg, cert="device", **kw):
    return Load(env, rg.port, "/load/", cert=cert, bearer=env.bearer, **kw)


def _changed(doc, what, **expected):
    """doc["changed"] is NO_CHANGE but for `expected` (lists compared sorted)."""
    ch = doc.get("changed")
    check(isinstance(ch, dict), "%s: reload answer has no changed object: %s"
          % (what, short(json.dumps(doc), 400)))
    want = dict(NO_CHANGE, **expected)
    got = {k: sorted(v) if isinstance(v, list) else v for k, v in ch.items()}
    eq(got, {k: sorted(v) for k, v in want.items()}, "%s: changed" % what)
    check(isinstance(doc.get("build_ms"), (int, float)) and doc["build_ms"] >= 0,
          "%s: build_ms %r" % (what, doc.get("build_ms")))


def _get(env, rg, path, cert="device", ctx=None, session=None):
    """One request on a new connection: (response, connection's session, reused?)."""
    with env.connect(rg, cert, ctx=ctx, session=session) as c:
        resp = c.request("GET", path)
        return resp, c.session, c.session_reused


def _peer_der(env, rg):
    ctx = env.client_context("device")
    with env.connect(rg, ctx=ctx) as c:
        der = c.sock.getpeercert(binary_form=True)
        eq(c.request("GET", "/api/cert").status, 200, "request on the probing connection")
    return der


def _file_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def _serial_of_der(der):
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(ssl.DER_cert_to_PEM_cert(der))
    try:
        return serial_of(f.name)
    finally:
        os.unlink(f.name)


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def _check_lines(rg):
    """What `portcullis --check` prints for the gateway's config file now:
    its file:line:col (or file:) error lines."""
    r = subprocess.run([BINARY, "--check", "-c", rg.config_path], capture_output=True, text=True,
                       timeout=20 * TIME_FACTOR,
                       env=dict(os.environ, PORTCULLIS_ADMIN_TOKEN=ADMIN_TOKEN))
    eq(r.returncode, 2, "--check exit status on the bad file (output %s)"
       % short(r.stdout + r.stderr, 400))
    return [ln for ln in (r.stdout + r.stderr).splitlines()
            if ln.startswith(rg.config_path + ":")]


def _refused(rg, status, doc, generation, what):
    """A 422 reload_failed answer that names generation; its errors."""
    eq(status, 422, "%s: status (%s)" % (what, short(json.dumps(doc), 600)))
    eq(doc.get("error"), "reload_failed", "%s: error code" % what)
    eq(doc.get("message"), "the configuration was not applied; the running one (generation %d) "
       "keeps serving" % generation, "%s: message" % what)
    eq(doc.get("generation"), generation, "%s: generation in the answer" % what)
    errors = doc.get("errors")
    check(isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors),
          "%s: errors %r" % (what, errors))
    return errors


def _runtime_is(rg, what, **want):
    rt = rg.runtime()
    for k, v in want.items():
        eq(rt.get(k), v, "%s: runtime.%s" % (what, k))
    return rt


# ---------------------------------------------------------------------------
# 1. server certificate and key replaced

@test("reload: server certificate and key files replaced under load: new handshakes get the new certificate", timeout=40)
def _(env):
    port = free_port()
    d = _dir(env, "cert")
    crt, key = _copy(env.pki("server.crt"), os.path.join(d, "srv.crt")), \
        _copy(env.pki("server.key"), os.path.join(d, "srv.key"))
    cfg = _config(env, port, {"tls": {"certificates": [{"cert": crt, "key": key}]}})
    rg = ReloadGateway(env, "reload-cert", cfg)
    load = _load(env, rg)
    try:
        load.start()
        eq(_peer_der(env, rg), _file_der(env.pki("server.crt")), "certificate before the reload")
        old = env.connect(rg)
        eq(old.request("GET", "/api/before").status, 200, "old connection before the reload")
        m = Minter(env, "reload-cert-mint", V3_SERVER)
        new_crt, new_key = m.leaf("server-renewed", "/O=Example Org/CN=localhost",
                                  "0x5e1e57ed0012", "v3_server", m.pki_ca("server-ca"))
        _copy(new_key, key)
        _copy(new_crt, crt)
        doc = rg.reload_ok(what="certificate rotation")
        eq(doc["generation"], 2, "generation")
        _changed(doc, "certificate rotation", files=[crt, key])
        for i in range(4):   # several connections: every worker serves the new one
            der = _peer_der(env, rg)
            eq(_serial_of_der(der), serial_of(new_crt), "serial seen by new handshake %d" % i)
            eq(der, _file_der(new_crt), "certificate seen by new handshake %d" % i)
        eq(old.request("GET", "/api/after").status, 200,
           "old keep-alive connection after the reload")
        old.close()
        rt = _runtime_is(rg, "after the rotation", generation=2, reloads=1, reload_failures=0)
        last = rt.get("last_reload") or {}
        eq(last.get("ok"), True, "runtime.last_reload.ok")
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                           str(last.get("at"))), "runtime.last_reload.at %r is not RFC 3339"
              % last.get("at"))
        eq(last.get("build_ms"), doc["build_ms"], "runtime.last_reload.build_ms")
        line = rg.wait_log(r"reload: generation 2 applied in \d+(\.\d+)? ms \(")
        check(line is not None, "no 'reload: generation 2 applied in N ms (...)' log line")
        check("srv.crt" in line and "srv.key" in line,
              "the log line does not name the changed files: %r" % line)
        check_clean(load.stop(), "certificate rotation")
    finally:
        load.kill()
        rg.stop()


# ---------------------------------------------------------------------------
# 2. a route added, one removed

@test("reload: a route added and one removed under load: the new one answers, the removed one is 404 no_route", timeout=40)
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-routes", _config(env, port, routes=_routes(_route("/old/"))))
    load = _load(env, rg)
    try:
        load.start()
        resp, _, _ = _get(env, rg, "/old/x")
        eq(upstream_info(resp, "/old/ before")["path"], "/old/x", "/old/ before the reload")
        resp, _, _ = _get(env, rg, "/new/x")
        expect_error(env, resp, env.upstream_count(), 404, "no_route", "/new/ before the reload")
        pinned = env.connect(rg)
        eq(pinned.request("GET", "/old/pinned").status, 200, "connection of generation 1")

        doc = rg.reload_ok(_config(env, port, routes=_routes(_route("/new/"))), what="routes")
        _changed(doc, "routes", files=[rg.config_path], routes_added=["*/new/ *"],
                 routes_removed=["*/old/ *"])
        for i in range(4):
            resp, _, _ = _get(env, rg, "/new/x%d" % i)
            eq(upstream_info(resp, "/new/ after")["path"], "/new/x%d" % i,
               "the added route, new connection %d" % i)
            before = env.upstream_count()
            resp, _, _ = _get(env, rg, "/old/x%d" % i)
            expect_error(env, resp, before, 404, "no_route",
                         "the removed route, new connection %d" % i)
        # a connection keeps the generation it was accepted under
        eq(pinned.request("GET", "/old/pinned").status, 200,
           "the removed route on a connection accepted before the reload")
        before = env.upstream_count()
        expect_error(env, pinned.request("GET", "/new/pinned"), before, 404, "no_route",
                     "the added route on a connection accepted before the reload")
        pinned.close()
        check(rg.wait_log(r"reload: generation 2 applied in .*routes: \+1 -1") is not None,
              "no log line with 'routes: +1 -1'")
        check_clean(load.stop(), "route change")
    finally:
        load.kill()
        rg.stop()


# ---------------------------------------------------------------------------
# 3. a class CA bundle changed

def _session(env, rg, cert, version, path):
    ctx = client_ctx(env, cert, version)
    resp, sess, _ = _get(env, rg, path, ctx=ctx)
    eq(resp.status, 200, "%s %s: first request" % (cert, version.name))
    return ctx, sess


def _resumes(env, rg, ctx, sess, path, what):
    """Resumes sess: (reused?, a new session from that connection)."""
    resp, new_sess, reused = _get(env, rg, path, ctx=ctx, session=sess)
    eq(resp.status, 200, "%s: request on the resuming connection" % what)
    return reused, new_sess


@test("reload: a class CA bundle changed under load: that class's sessions no longer resume, the others' still do", timeout=40)
def _(env):
    port = free_port()
    d = _dir(env, "bundle")
    bundle = _copy(env.pki("bootstrap-ca.crt"), os.path.join(d, "bootstrap-bundle.pem"))
    classes = [{"name": "device", "ca": env.pki("device-ca.crt")},
               {"name": "bootstrap", "ca": bundle}]
    cfg = _config(env, port, {"tls": {"classes": classes}})
    rg = ReloadGateway(env, "reload-bundle", cfg)
    load = _load(env, rg, modes=("full", "keepalive", "resume"))
    try:
        load.start()
        paths = {"bootstrap": "/certificates/x", "device": "/api/x"}
        sessions = {}
        for v, _name in VERSIONS:
            for cert, path in paths.items():
                ctx, sess = _session(env, rg, cert, v, path)
                reused, _ = _resumes(env, rg, ctx, sess, path, "%s %s before" % (cert, v.name))
                check(reused, "%s %s: a session does not resume even before the reload"
                      % (cert, v.name))
                sessions[(cert, v)] = _session(env, rg, cert, v, path)
        with open(bundle, "a") as f, open(env.pki("other-ca.crt")) as o:
            f.write(o.read())
        doc = rg.reload_ok(what="bundle")
        _changed(doc, "bundle", files=[bundle], classes_changed=["bootstrap"])
        for (cert, v), (ctx, sess) in sessions.items():
            what = "%s %s session made before the reload" % (cert, v.name)
            reused, new_sess = _resumes(env, rg, ctx, sess, paths[cert], what)
            eq(reused, cert == "device", "%s: resumed" % what)
            # the full handshake's session resumes under the new generation
            reused, _ = _resumes(env, rg, ctx, new_sess, paths[cert],
                                 "%s %s session made after the reload" % (cert, v.name))
            check(reused, "%s %s: a session made after the reload does not resume"
                  % (cert, v.name))
        check(rg.wait_log(r"reload: generation 2 applied in .*classes: bootstrap") is not None,
              "no log line with 'classes: bootstrap'")
        check_clean(load.stop(), "bundle change")
    finally:
        load.kill()
        rg.stop()


@test("reload: a chain verified before a reload that left its class unchanged is a verify-cache hit after it")
def _(env):
    port = free_port()
    routes = [_route("/load/", upstream="load", classes=("device", "bootstrap")), _route("/api/")]
    rg = ReloadGateway(env, "reload-vcache", _config(env, port, routes=routes))
    load = _load(env, rg, cert="bootstrap")
    try:
        load.start()
        eq(_get(env, rg, "/api/v", cert="device")[0].status, 200, "device before the reload")
        rg.reload_ok(_config(env, port, routes=routes + [_route("/new/")]), what="route added")
        check_clean(load.stop(), "verify cache")
        vc0 = rg.health()["verify_cache"]
        eq(_get(env, rg, "/api/v", cert="device")[0].status, 200,
           "device after the reload (a full handshake)")
        vc1 = rg.health()["verify_cache"]
        eq((vc1["hits"] - vc0["hits"], vc1["misses"] - vc0["misses"]), (1, 0),
           "verify cache (hits, misses) of the device's full handshake after the reload "
           "(before %s, after %s)" % (vc0, vc1))
    finally:
        load.kill()
        rg.stop()


@test("reload: a CA removed from a class bundle: its certificates are refused at once, cached chain and saved session or not", timeout=40)
def _(env):
    port = free_port()
    d = _dir(env, "ca-removed")
    bundle = _copy(env.pki("device-ca.crt"), os.path.join(d, "device-bundle.pem"))
    classes = [{"name": "device", "ca": bundle},
               {"name": "bootstrap", "ca": env.pki("bootstrap-ca.crt")}]
    routes = [_route("/load/", upstream="load", classes=("device", "bootstrap")), _route("/")]
    rg = ReloadGateway(env, "reload-ca-removed",
                       _config(env, port, {"tls": {"classes": classes}}, routes=routes))
    load = _load(env, rg, cert="bootstrap")
    try:
        load.start()
        saved = {}
        for v, name in VERSIONS:
            ctx = client_ctx(env, "device", v)
            eq(verdict(env, rg, ctx), "HTTP 200", "%s: device before the reload" % name)
            resp, sess, _ = _get(env, rg, "/api/s", ctx=ctx)   # the chain is now cached
            eq(resp.status, 200, "%s: device session" % name)
            saved[v] = (ctx, sess)
        with open(bundle, "w") as f, open(env.pki("other-ca.crt")) as o:
            f.write(o.read())
        doc = rg.reload_ok(what="device CA removed")
        _changed(doc, "device CA removed", files=[bundle], classes_changed=["device"])
        before = env.upstream_count()
        for v, name in VERSIONS:
            ctx, sess = saved[v]
            eq(verdict(env, rg, ctx), "TLSV1_ALERT_UNKNOWN_CA",
               "%s: a new handshake of a certificate whose CA left the bundle" % name)
            eq(verdict(env, rg, ctx, sess), "TLSV1_ALERT_UNKNOWN_CA",
               "%s: a session saved before the CA left the bundle" % name)
        eq(env.upstream_count(), before, "requests that reached the upstream after the removal")
        check_clean(load.stop(), "CA removed")
    finally:
        load.kill()
        rg.stop()


@test("reload: a route's JWKS file replaced under load: tokens of the new key accepted, the old key's refused")
def _(env):
    port = free_port()
    keys = jwt_keys(env, "reload-jwt", ("es", "other"))
    live = _copy(os.path.join(keys, "jwks.json"), os.path.join(_dir(env, "jwks"), "jwks.json"))
    jwt = {"jwks_file": live, "issuer": "https://issuer.example", "audience": "api",
           "leeway": "5s"}
    rg = ReloadGateway(env, "reload-jwks",
                       _config(env, port, routes=_routes(_route("/jwt/", jwt=jwt))))
    load = _load(env, rg)
    try:
        load.start()
        old_tok = mint_jwt(os.path.join(keys, "es.pem"))
        new_tok = mint_jwt(os.path.join(keys, "other.pem"))

        def status(tok):
            with env.connect(rg) as c:
                r = c.request("GET", "/jwt/x", bearer=tok)
            if r.status == 401:
                eq(r.json().get("error"), "invalid_token", "401 error code")
            return r.status

        eq((status(old_tok), status(new_tok)), (200, 401), "old key, new key before the reload")
        mint_jwt(os.path.join(keys, "other.pem"), "--write-jwks", live)
        doc = rg.reload_ok(what="JWKS")
        _changed(doc, "JWKS", files=[live])
        eq((status(old_tok), status(new_tok)), (401, 200), "old key, new key after the reload")
        check_clean(load.stop(), "JWKS change")
    finally:
        load.kill()
        rg.stop()


@test("reload: a session made under a generation since freed resumes with its identity intact")
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-freed-gen", _config(env, port))
    load = _load(env, rg, modes=("full",))   # short connections: they pin no generation for long
    try:
        load.start()
        saved = {v: _session(env, rg, "device", v, "/api/s") for v, _ in VERSIONS}
        for i in range(3):
            rg.reload_ok(_config(env, port, routes=_routes(_route("/flip/%d/" % i))),
                         what="reload %d" % (i + 1))
        check(rg.wait_generations_live(1, 5.0), "generation 1 not freed: %r" % rg.runtime())
        want = env.identity("device", "device")
        for v, name in VERSIONS:
            ctx, sess = saved[v]
            resp, _, reused = _get(env, rg, "/api/resumed", ctx=ctx, session=sess)
            check(reused, "%s: a session of the freed generation 1 did not resume" % name)
            check_identity(upstream_info(resp, "%s resumed" % name), want)
        check_clean(load.stop(), "freed generation")
    finally:
        load.kill()
        rg.stop()


# ---------------------------------------------------------------------------
# 4. a rate limit tightened

def _rl_config(env, port, burst):
    cfg = _config(env, port, routes=_routes(_route("/rl/", rate_limits=["per_device"])))
    # 2/m: one request's worth refills every 30 s, far longer than the test
    cfg["rate_limits"] = [{"name": "per_device", "key": "device_id", "rate": "2/m",
                           "burst": burst}]
    return cfg


def _until_limited(env, rg, cert, n):
    """n requests to /rl/, each on a new connection (accepted under the
    current generation): their statuses."""
    codes = []
    for i in range(n):
        resp, _, _ = _get(env, rg, "/rl/%d" % i, cert=cert)
        codes.append(resp.status)
        if resp.status == 429:
            eq(resp.json().get("error"), "rate_limited", "429 error code")
    return codes


@test("reload: a rate limit tightened under load applies to the budget already spent", timeout=40)
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-rl", _rl_config(env, port, 10))
    load = _load(env, rg)
    try:
        load.start()
        eq(_until_limited(env, rg, "device", 6), [200] * 6, "device: 6 of burst 10")
        rg.reload_ok(_rl_config(env, port, 8), what="burst 10 -> 8")
        # 6 spent of the new 8: two left, not a fresh 8
        eq(_until_limited(env, rg, "device", 4), [200, 200, 429, 429],
           "device after the reload to burst 8")
        eq(_until_limited(env, rg, "device2", 9), [200] * 8 + [429],
           "device2 (nothing spent) after the reload to burst 8")
        rg.reload_ok(_rl_config(env, port, 4), what="burst 8 -> 4")
        eq(_until_limited(env, rg, "device", 2), [429, 429],
           "device after the reload to burst 4 (8 spent)")
        eq(_until_limited(env, rg, "device2", 1), [429], "device2 after the reload to burst 4")
        check_clean(load.stop(), "rate limit change")
    finally:
        load.kill()
        rg.stop()


def _conn_from(env, rg, src):
    """A device connection from the local address src (so the per-IP count
    is the test's alone): a harness Conn."""
    raw = socket.create_connection(("127.0.0.1", rg.port), timeout=5, source_address=(src, 0))
    try:
        s = env.client_context("device").wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    c = Conn.__new__(Conn)
    c.sock, c.buf, c.timeout, c.bearer = s, bytearray(), 5.0, env.bearer
    return c


def _served_from(env, rg, src):
    """A new connection from src is served (True) or cut before TLS (False)."""
    try:
        c = _conn_from(env, rg, src)
    except REFUSAL_ERRORS:
        return False, None
    try:
        return c.request("GET", "/api/connlimit").status == 200, c
    except REFUSAL_ERRORS:
        c.close()
        return False, None


@test("reload: a per-IP connection limit tightened under load counts the connections already open")
def _(env):
    port = free_port()
    src = "127.0.0.3"

    def cfg(n):
        return _config(env, port, {"connection_limits": {"per_ip_concurrent": n}})

    rg = ReloadGateway(env, "reload-connlimit", cfg(6))
    load = _load(env, rg, conns={"full": 1, "keepalive": 1})
    held = []
    try:
        load.start()
        for i in range(5):
            ok, c = _served_from(env, rg, src)
            check(ok, "connection %d of 5 (limit 6) not served" % (i + 1))
            held.append(c)
        rg.reload_ok(cfg(4), what="per_ip_concurrent 6 -> 4")
        ok, _ = _served_from(env, rg, src)
        check(not ok, "a new connection was served with 5 open and the limit now 4: the "
              "reload reset the count")
        for i, c in enumerate(held):
            eq(c.request("GET", "/api/held").status, 200, "open connection %d after the reload" % i)
        for _ in range(2):
            held.pop().close()
        time.sleep(0.3)
        ok, c = _served_from(env, rg, src)
        check(ok, "a new connection refused with 3 open and the limit 4")
        held.append(c)
        ok, _ = _served_from(env, rg, src)
        check(not ok, "a new connection was served with 4 open and the limit 4")
        check_clean(load.stop(), "connection limit change")
    finally:
        for c in held:
            c.close()
        load.kill()
        rg.stop()


# ---------------------------------------------------------------------------
# 5. invalid files

@test("reload: a YAML syntax error, then a missing key file: 422 with every error, the old configuration keeps serving", timeout=45)
def _(env):
    port = free_port()
    d = _dir(env, "invalid")
    good = _config(env, port, routes=_routes(_route("/old/")))
    rg = ReloadGateway(env, "reload-invalid", good)
    load = _load(env, rg)
    try:
        load.start()
        good_text = open(rg.config_path).read()
        # (1) a syntax error, with a route change that must not apply
        bad_cfg = _config(env, port, routes=_routes(_route("/new/")))
        bad_cfg["admin"] = rg.cfg["admin"]
        text = to_yaml(bad_cfg).replace("  idle: 30s\n", "  idle: [30s\n")
        check("[30s" in text, "the syntax error was not put in")
        rg.write_config(text=text)
        want = _check_lines(rg)
        check(want and re.match(re.escape(rg.config_path) + r":\d+:\d+: ", want[0]),
              "--check prints no file:line:col error: %r" % want)
        off = rg.log_size()
        status, doc = rg.reload()
        errors = _refused(rg, status, doc, 1, "syntax error")
        eq(errors, want, "syntax error: errors (as --check prints them)")
        log = rg.log_since(off)
        check("reload: refused, generation 1 keeps serving: %d problem(s)" % len(errors) in log,
              "syntax error: no refusal line in the log: %s" % short(log, 600))
        for e in errors:
            check(e in log, "syntax error: %r is not in the log" % e)
        _runtime_is(rg, "after the syntax error", generation=1, reloads=0, reload_failures=1)
        check(rg.runtime().get("last_reload", {}).get("ok") is False,
              "last_reload.ok after a refusal")
        resp, _, _ = _get(env, rg, "/old/still")
        eq(upstream_info(resp, "old route")["path"], "/old/still", "the old configuration serves")
        before = env.upstream_count()
        expect_error(env, _get(env, rg, "/new/x")[0], before, 404, "no_route",
                     "the route of the refused file")

        # (2) valid YAML naming a key file that does not exist
        missing = os.path.join(d, "missing.key")
        cfg = _config(env, port, {"tls": {"certificates": [{"cert": env.pki("server.crt"),
                                                      "key": missing}]}},
                      routes=_routes(_route("/new/")))
        rg.write_config(cfg)
        want = _check_lines(rg)
        off = rg.log_size()
        status, doc = rg.reload()
        errors = _refused(rg, status, doc, 1, "missing key file")
        eq(errors, want, "missing key file: errors (as --check prints them)")
        check(any(missing in e for e in errors), "no error names %s: %r" % (missing, errors))
        log = rg.log_since(off)
        check("reload: refused, generation 1 keeps serving: %d problem(s)" % len(errors) in log,
              "missing key: no refusal line in the log: %s" % short(log, 600))
        for e in errors:
            check(e in log, "missing key: %r is not in the log" % e)
        _runtime_is(rg, "after the missing key", generation=1, reloads=0, reload_failures=2)
        eq(_get(env, rg, "/old/still")[0].status, 200, "the old configuration still serves")

        # (3) SIGHUP with the bad file: refused and logged the same way
        line, log = rg.sighup()
        eq(line.split("reload: ", 1)[1], "refused, generation 1 keeps serving: %d problem(s)"
           % len(errors), "SIGHUP with the bad file: log line")
        for e in errors:
            check(e in log, "SIGHUP: %r is not in the log" % e)
        _runtime_is(rg, "after SIGHUP with the bad file", generation=1, reload_failures=3)

        # (4) the good file again, by SIGHUP: applied
        line, _ = rg.sighup(text=good_text.replace("/old/", "/new/"))
        check(re.search(r"reload: generation 2 applied in \d+(\.\d+)? ms", line),
              "SIGHUP with a good file: log line %r" % line)
        _runtime_is(rg, "after SIGHUP with a good file", generation=2, reloads=1,
                    reload_failures=3)
        check(rg.runtime().get("last_reload", {}).get("ok") is True, "last_reload.ok after success")
        eq(_get(env, rg, "/new/now")[0].status, 200, "the new route after the good reload")
        check_clean(load.stop(), "invalid files")
    finally:
        load.kill()
        rg.stop()


@test("reload: a changed restart-only key (workers) refuses the whole reload with the key named")
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-restart-key", _config(env, port))
    load = _load(env, rg)
    try:
        load.start()
        w = rg.cfg["workers"]
        cfg = _config(env, port, routes=_routes(_route("/new/")))
        cfg["workers"] = w + 1
        status, doc = rg.reload(cfg)
        errors = _refused(rg, status, doc, 1, "workers changed")
        tail = "this key needs a restart (the reload was refused)"
        eq(errors, ["%s: workers: changed from %d to %d; %s" % (rg.config_path, w, w + 1, tail)],
           "workers changed: errors")
        # two restart-only keys: one error each
        cfg["redis"] = dict(cfg["redis"], db=3)
        status, doc = rg.reload(cfg)
        errors = _refused(rg, status, doc, 1, "workers and redis.db changed")
        eq(sorted(errors), sorted(["%s: workers: changed from %d to %d; %s"
                                   % (rg.config_path, w, w + 1, tail),
                                   "%s: redis.db: changed from 0 to 3; %s" % (rg.config_path, tail)]),
           "workers and redis.db changed: errors")
        before = env.upstream_count()
        expect_error(env, _get(env, rg, "/new/x")[0], before, 404, "no_route",
                     "a route of the refused file")
        _runtime_is(rg, "after the refusals", generation=1, reloads=0, reload_failures=2)
        check_clean(load.stop(), "restart-only key")
    finally:
        load.kill()
        rg.stop()


@test("reload: concurrent POST /admin/reload: each answers 200 or 409 reload_in_progress, one generation per 200")
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-concurrent", _config(env, port))
    try:
        results = []

        def go():
            results.append(rg.reload())

        threads = [threading.Thread(target=go) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20 * TIME_FACTOR)
        eq(len(results), 6, "answers")
        ok = [doc for status, doc in results if status == 200]
        busy = [doc for status, doc in results if status == 409]
        eq(len(ok) + len(busy), 6, "answers that are 200 or 409: %s"
           % short(json.dumps(results), 600))
        check(ok, "no reload was applied")
        for doc in busy:
            eq(doc.get("error"), "reload_in_progress", "409 error code")
        eq(sorted(d["generation"] for d in ok), list(range(2, 2 + len(ok))),
           "generations of the applied reloads")
        _runtime_is(rg, "after the concurrent reloads", generation=1 + len(ok), reloads=len(ok),
                    reload_failures=0)
    finally:
        rg.stop()


@test("reload: after reload_grace an idle old connection is closed, a request in flight completes first", timeout=40)
def _(env):
    port = free_port()
    cfg = _config(env, port, {"timeouts": {"reload_grace": "1s"}})
    rg = ReloadGateway(env, "reload-grace", cfg)
    # open loop: the bench's keep-alive connections of generation 1 are idle
    # between requests when the grace ends, and close then without a failed
    # request; closed loop: a connection that is never idle for long sends
    # its next request right after each response, and must not lose one
    load = _load(env, rg)
    busy_load = _load(env, rg, modes=("keepalive",), conns={"keepalive": 1},
                      closed_loop=("keepalive",))
    try:
        load.start()
        busy_load.start()
        idle = env.connect(rg)
        eq(idle.request("GET", "/api/idle").status, 200, "the idle connection's request")
        busy = env.connect(rg, timeout=10)
        busy.send(build_request("GET", "/api/slow?ms=2500", bearer=env.bearer))
        time.sleep(0.3)
        rg.reload_ok(_config(env, port, {"timeouts": {"reload_grace": "1s"}},
                             routes=_routes(_route("/new/"))), what="grace")
        t0 = time.monotonic()
        check(not idle.is_closed(timeout=0.5), "the idle connection was closed before reload_grace")
        check(idle.is_closed(timeout=2.0 * TIME_FACTOR), "the idle connection is still open %.1fs "
              "after the reload (reload_grace 1s)" % (time.monotonic() - t0))
        took = time.monotonic() - t0
        check(took >= 0.9, "the idle connection was closed %.2fs after the reload, before "
              "reload_grace (1s)" % took)
        resp = busy.read_response(timeout=10)
        eq(upstream_info(resp, "in-flight request")["path"], "/api/slow?ms=2500",
           "the request in flight across the grace")
        check(time.monotonic() - t0 >= 1.5, "the slow response came early")
        check(busy.is_closed(timeout=1.0 * TIME_FACTOR),
              "the old connection is still open after its in-flight response")
        idle.close()
        busy.close()
        eq(_get(env, rg, "/new/x")[0].status, 200, "a new connection after the grace")
        check(rg.wait_generations_live(1, 3.0), "generation 1 still live after its connections "
              "were closed: %r" % rg.runtime())
        check_clean(load.stop(), "reload_grace")
        check_clean(busy_load.stop(), "reload_grace, closed loop")
    finally:
        load.kill()
        busy_load.kill()
        rg.stop()


@test("reload: a response already under way when reload_grace ends: the next request on its connection is answered with Connection: close, not dropped", timeout=40)
def _(env):
    port = free_port()
    grace = {"timeouts": {"reload_grace": "1s"}}
    rg = ReloadGateway(env, "reload-grace-head", _config(env, port, grace))
    load = _load(env, rg)
    try:
        load.start()
        c = env.connect(rg, timeout=10)
        size = 16000000   # more than the socket buffers hold: still under way
        c.send(build_request("GET", "/api/download?bytes=%d" % size, bearer=env.bearer))
        head = c._read_until(b"\r\n\r\n", 65536, 10)
        check(head.startswith(b"HTTP/1.1 200 ") and b"\nconnection: close" not in head.lower(),
              "the download's head: %r" % short(head))
        off = rg.log_size()
        rg.reload_ok(_config(env, port, grace, routes=_routes(_route("/new/"))), what="grace")
        # the client does not read: the response is still under way when the grace ends
        check(rg.wait_log(r"reload grace over for generation 1", off, 3.0) is not None,
              "no 'reload grace over' log line within 3s of the reload (reload_grace 1s)")
        time.sleep(0.3)
        body = c._read_chunked(10 * TIME_FACTOR)
        eq(len(body), size, "the body of the response under way across the grace")
        # the case needs the response still under way when the grace ended:
        # its access-log line (written when it completes) comes after
        log = rg.log_since(off).splitlines()
        grace_at = [i for i, ln in enumerate(log) if "reload grace over for generation 1" in ln]
        done_at = [i for i, ln in enumerate(log) if "event=access" in ln and " method=GET path=/api/download " in ln
                   and " status=200 " in ln and " response_bytes=%d " % size in ln]
        check(grace_at and done_at and done_at[0] > grace_at[0],
              "test precondition: the download completed before the grace ended (log: %s)"
              % short(" | ".join(log), 600))
        # nothing told the client the connection would close: it may send again
        try:
            c.send(build_request("GET", "/api/next", bearer=env.bearer))
            resp = c.read_response(timeout=5)
        except REFUSAL_ERRORS as e:
            fail("the next request on the connection (its previous response carried no "
                 "Connection: close) was dropped: %r" % e)
        eq(upstream_info(resp, "the next request")["path"], "/api/next", "the next request")
        eq((resp.header("Connection") or "").lower(), "close",
           "Connection header of the old connection's last response")
        check(c.is_closed(timeout=1.0 * TIME_FACTOR), "the old connection is still open after "
              "a response with Connection: close")
        c.close()
        check_clean(load.stop(), "response across the grace")
    finally:
        load.kill()
        rg.stop()


@test("reload: a listener added and removed under load: served at once, then refused; its open connection is kept")
def _(env):
    port = free_port()
    rg = ReloadGateway(env, "reload-listeners", _config(env, port))
    load = _load(env, rg)
    try:
        load.start()
        first = rg.cfg["listeners"][0]["address"]
        port2 = free_port()
        second = "127.0.0.1:%d" % port2
        cfg = _config(env, port)
        cfg["listeners"] = [{"address": first}, {"address": second}]
        doc = rg.reload_ok(cfg, what="listener added")
        _changed(doc, "listener added", files=[rg.config_path], listeners_added=[second])
        for i in range(3):
            with env.connect(port2) as c:
                eq(c.request("GET", "/api/second%d" % i).status, 200,
                   "a request on the added listener (%d)" % i)
        kept = env.connect(port2)
        eq(kept.request("GET", "/api/kept").status, 200, "the connection kept across the removal")
        cfg = _config(env, port)
        cfg["listeners"] = [{"address": first}]
        doc = rg.reload_ok(cfg, what="listener removed")
        _changed(doc, "listener removed", files=[rg.config_path], listeners_removed=[second])
        try:
            env.connect(port2, timeout=2).close()
            fail("a connection to the removed listener %s was accepted" % second)
        except ConnectionRefusedError:
            pass
        eq(kept.request("GET", "/api/kept").status, 200,
           "a connection accepted on the removed listener before its removal")
        kept.close()
        check_clean(load.stop(), "listener change")
    finally:
        load.kill()
        rg.stop()


# ---------------------------------------------------------------------------
# 6. a revocation published in the middle of a sequence of reloads

@test("reload: a revocation published during reloads is enforced on old- and new-generation connections", timeout=45)
def _(env):
    port = free_port()
    redis = RedisServer(env, "reload-rev").start()
    rg = None
    load = None
    try:
        cfg = _config(env, port, redis_overrides(redis.port))
        rg = ReloadGateway(env, "reload-rev", cfg)
        load = _load(env, rg, cert="device2")
        load.start()
        gen1 = env.connect(rg, "device")
        eq(gen1.request("GET", "/api/gen1").status, 200, "device: connection of generation 1")
        sessions = {v: _session(env, rg, "device", v, "/api/s") for v, _ in VERSIONS}

        results, third = [], threading.Event()

        def reloads():
            for i in range(10):
                c = _config(env, port, redis_overrides(redis.port),
                            routes=_routes(_route("/flip/%d/" % i)))
                try:
                    results.append(rg.reload(c))
                except Exception as e:  # noqa: BLE001
                    results.append((0, repr(e)))
                if i == 2:
                    third.set()

        th = threading.Thread(target=reloads, daemon=True)
        th.start()
        check(third.wait(10 * TIME_FACTOR), "three reloads did not complete")
        mid = env.connect(rg, "device")
        eq(mid.request("GET", "/api/mid").status, 200, "device: connection of a later generation")
        serial = env.identity("device", "device")[H_SERIAL]
        status, doc = rg.admin("POST", "/admin/revocations", {"class": "device", "serial": serial,
                                                              "reason": "reload test"})
        eq((status, doc), (201, {"entry": "device:" + serial, "revoked": True}), "revocation")
        t0 = time.monotonic()
        check(gen1.is_closed(timeout=1.0 * TIME_FACTOR),
              "the generation-1 connection of the revoked certificate is still open")
        check(mid.is_closed(timeout=1.0 * TIME_FACTOR),
              "the later-generation connection of the revoked certificate is still open")
        check(time.monotonic() - t0 <= 1.2 * TIME_FACTOR, "closing took %.1fs"
              % (time.monotonic() - t0))
        th.join(30 * TIME_FACTOR)
        check(not th.is_alive(), "the reloads did not finish")
        eq([s for s, _ in results], [200] * 10, "reload statuses (%s)"
           % short(json.dumps([b for _, b in results if not isinstance(b, str)][-1:]), 300))
        eq(rg.runtime()["generation"], 11, "generation after 10 reloads")
        before = env.upstream_count()
        for v, name in VERSIONS:
            eq(verdict(env, rg, client_ctx(env, "device", v)), REVOKED,
               "%s: a new handshake of the revoked certificate" % name)
            ctx, sess = sessions[v]
            eq(verdict(env, rg, ctx, sess), REVOKED,
               "%s: a resumed session of the revoked certificate" % name)
        eq(env.upstream_count(), before,
           "requests of the revoked certificate that reached the upstream")
        eq(_get(env, rg, "/api/other", cert="device2")[0].status, 200, "device2 still served")
        gen1.close()
        mid.close()
        check_clean(load.stop(), "revocation during reloads")
    finally:
        if load:
            load.kill()
        if rg:
            rg.stop()
        redis.stop()


# ---------------------------------------------------------------------------
# 7. 200 reloads in a row

def _quiet(rg):
    """Waits until only the current generation is live and the pooled
    upstream connections (keepalive_timeout 1s) and the heaps have been
    let go; then (fds, rss kB)."""
    check(rg.wait_generations_live(1, 5.0), "old generations still live with no connection: %r"
          % rg.runtime())
    time.sleep(2.5)   # the pools' 1s keepalive_timeout, two trim ticks
    return proc_fds(rg.pid), proc_rss_kb(rg.pid)


@test("reload: 200 reloads in a row under load: no error, file descriptors and RSS flat", timeout=120)
def _(env):
    port = free_port()
    over = {"tls": {"session_cache": {"size": 64, "lifetime": "10m"},
                    "verify_cache": {"size": 64, "lifetime": "10m"}}}

    def cfg(i):
        c = _config(env, port, over, routes=_routes(_route("/flip/%d/" % (i % 2))))
        for u in c["upstreams"]:
            u["keepalive_timeout"] = "1s"
        return c

    rg = ReloadGateway(env, "reload-200", cfg(0))
    gen = [1]

    def reloads(n):
        for _ in range(n):
            time.sleep(0.01)   # spread over a few seconds of load: connections of many generations
            status, doc = rg.reload(cfg(gen[0]))
            check(status == 200, "reload %d answered %d: %s"
                  % (gen[0], status, short(json.dumps(doc), 400)))
            gen[0] += 1
            eq(doc.get("generation"), gen[0], "generation")

    load = None
    try:
        # warm-up: caches filled (64 sessions, 64 chains), allocator warm
        load = _load(env, rg).start()
        reloads(20)
        check_clean(load.stop(), "warm-up")
        fds0, rss0 = _quiet(rg)

        load = _load(env, rg).start()
        t0 = time.monotonic()
        reloads(200)
        took = time.monotonic() - t0
        reports = check_clean(load.stop(), "200 reloads", min_requests=10)
        fds1, rss1 = _quiet(rg)
        _runtime_is(rg, "after 220 reloads", generation=221, reloads=220, reload_failures=0,
                    generations_live=1)
        check(abs(fds1 - fds0) <= 2, "open file descriptors: %d before the 200 reloads, %d after"
              % (fds0, fds1))
        growth = rss1 - rss0
        # ASan's quarantine keeps freed memory resident: only the leak check counts there
        if not SANITIZED:
            check(growth < 4096, "RSS grew by %d kB over 200 reloads (%d -> %d kB)"
                  % (growth, rss0, rss1))
        print("# 200 reloads in %.1fs; fds %d -> %d; RSS %d -> %d kB; requests %s"
              % (took, fds0, fds1, rss0, rss1,
                 {m: r["requests"] for m, r in reports.items()}), flush=True)
        rg.gw.expect_exit = True
        os.kill(rg.pid, signal.SIGTERM)
        try:
            rc = rg.gw.proc.wait(timeout=15 * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            fail("gateway still running 15s after SIGTERM")
        eq(rc, 0, "exit status after SIGTERM (log: %s)" % rg.gw.log_tail(5, joined=True))
        leaks = [ln for ln in rg.log_text().splitlines()
                 if "LeakSanitizer" in ln or "ERROR: AddressSanitizer" in ln]
        eq(leaks, [], "sanitizer reports at exit")
    finally:
        if load:
            load.kill()
        rg.stop()

