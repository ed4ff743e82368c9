"""Client identity headers, bearer requirement and class-based route access."""

from harness import (H_CLASS, H_DEVICE_ID, H_SERIAL, IDENTITY_HEADERS, check, check_identity,
                     check_json_error, eq, short, test, upstream_headers, upstream_info)


def _get(env, cert="device", path="/hello?x=1", headers=(), scenario="main", **kw):
    gw = env.gateway(scenario)
    with env.connect(gw, cert) as c:
        return c.request("GET", path, headers=headers, **kw)


@test("device cert + bearer: 200 and upstream sees the identity headers")
def _(env):
    resp = _get(env)
    info = upstream_info(resp)
    eq(info["method"], "GET", "method seen by upstream")
    eq(info["path"], "/hello?x=1", "request target seen by upstream")
    check_identity(info, env.identity("device", "device"))


@test("identity: serial is lowercase hex without leading zeros")
def _(env):
    info = upstream_info(_get(env))
    eq(upstream_headers(info, H_SERIAL), ["badc0de1234"], H_SERIAL)


@test("identity: second device cert gets its own device id")
def _(env):
    info = upstream_info(_get(env, cert="device2"))
    check_identity(info, env.identity("device2", "device"))
    eq(upstream_headers(info, H_DEVICE_ID), ["device-5678"], H_DEVICE_ID)


@test("Authorization header forwarded unchanged")
def _(env):
    info = upstream_info(_get(env))
    eq(upstream_headers(info, "Authorization"), ["Bearer " + env.bearer], "Authorization")


@test("X-Forwarded-For, X-Forwarded-Proto and a generated X-Request-Id")
def _(env):
    info = upstream_info(_get(env))
    eq(upstream_headers(info, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For")
    eq(upstream_headers(info, "X-Forwarded-Proto"), ["https"], "X-Forwarded-Proto")
    rid = upstream_headers(info, "X-Request-Id")
    check(len(rid) == 1 and rid[0], "X-Request-Id: expected one non-empty value, got %r" % rid)


@test("client-sent X-Request-Id is kept")
def _(env):
    info = upstream_info(_get(env, headers=[("X-Request-Id", "test-req-42")]))
    eq(upstream_headers(info, "X-Request-Id"), ["test-req-42"], "X-Request-Id")


@test("generated X-Request-Ids differ between requests")
def _(env):
    a = upstream_headers(upstream_info(_get(env)), "X-Request-Id")
    b = upstream_headers(upstream_info(_get(env)), "X-Request-Id")
    check(a != b, "two requests got the same X-Request-Id %r" % a)


@test("spoofed identity headers are replaced by the gateway's values")
def _(env):
    spoof = [
        ("X-Client-Cert-Serial", "deadbeef"),
        ("x-device-id", "evil-1"),
        ("X-Device-Id", "evil-2"),
        ("X-DEVICE-ID", "   evil-3   "),
        ("x-client-cert-class", "bootstrap"),
        ("X-Client-Cert-Fingerprint", "00" * 32),
        ("X-Client-Cert-Subject", "CN=admin,O=Example Org"),
        ("X-Client-Cert-Issuer", "CN=Evil CA"),
        ("X-Client-Cert-SAN-URI", "urn:portcullis:device:admin"),
        ("X-Client-Cert-SAN-DNS", "admin.example"),
        ("X-Client-Cert-Not-After", "2099-01-01T00:00:00Z"),
    ]
    info = upstream_info(_get(env, headers=spoof))
    check_identity(info, env.identity("device", "device"))


@test("spoofed identity headers with odd spacing are replaced")
def _(env):
    gw = env.gateway("main")
    raw = ("GET /spacing HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
           "X-Device-Id:evil-nospace\r\n"
           "X-Client-Cert-Class:\t bootstrap \t\r\n"
           "x-CLIENT-cert-SERIAL:     1\r\n"
           "\r\n" % env.bearer).encode()
    with env.connect(gw, "device") as c:
        c.send(raw)
        info = upstream_info(c.read_response())
    check_identity(info, env.identity("device", "device"))


@test("spoofed X-Device-Id removed when the cert yields no device id (bootstrap)")
def _(env):
    info = upstream_info(_get(env, cert="bootstrap", path="/certificates/new",
                              headers=[("X-Device-Id", "evil"), ("X-Client-Cert-Class", "device")],
                              bearer=None))
    check("evil" not in upstream_headers(info, H_DEVICE_ID),
          "client-sent X-Device-Id reached the upstream: %r" % upstream_headers(info, H_DEVICE_ID))
    eq(upstream_headers(info, H_CLASS), ["bootstrap"], H_CLASS)


@test("whitespace between header name and colon: 400, not forwarded")
def _(env):
    before = env.upstream_count()
    resp = _get(env, headers=[("X-Client-Cert-Class ", "bootstrap")])
    eq(resp.status, 400, "status")
    eq(env.upstream_count(), before, "upstream request count")


@test("missing Authorization: 401 with WWW-Authenticate: Bearer and JSON body")
def _(env):
    before = env.upstream_count()
    resp = _get(env, bearer=None)
    check_json_error(resp, 401)
    wa = resp.header("WWW-Authenticate") or ""
    check(wa.split(" ")[0].lower() == "bearer", "WWW-Authenticate: expected Bearer, got %r" % wa)
    eq(env.upstream_count(), before, "upstream request count")


@test("Authorization: Basic: 401")
def _(env):
    resp = _get(env, bearer=None, headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    check_json_error(resp, 401)


@test("Authorization: Bearer with empty token: 401")
def _(env):
    resp = _get(env, bearer=None, headers=[("Authorization", "Bearer ")])
    check_json_error(resp, 401)
    resp = _get(env, bearer=None, headers=[("Authorization", "Bearer")])
    check_json_error(resp, 401, "'Bearer' without token")


@test("bootstrap cert on device-only route: 403 JSON")
def _(env):
    before = env.upstream_count()
    resp = _get(env, cert="bootstrap", path="/api/thing")
    check_json_error(resp, 403)
    eq(env.upstream_count(), before, "upstream request count")


@test("bootstrap cert on /certificates/: 200 with class bootstrap")
def _(env):
    info = upstream_info(_get(env, cert="bootstrap", path="/certificates/enroll", bearer=None))
    expected = env.identity("bootstrap", "bootstrap")
    check_identity(info, expected)


@test("device cert on /certificates/ (both classes allowed): 200 with class device")
def _(env):
    info = upstream_info(_get(env, cert="device", path="/certificates/renew", bearer=None))
    eq(upstream_headers(info, H_CLASS), ["device"], H_CLASS)


@test("unknown route: 404 JSON (config with only /api/)")
def _(env):
    before = env.upstream_count()
    resp = _get(env, path="/other/thing", scenario="apionly")
    check_json_error(resp, 404)
    eq(env.upstream_count(), before, "upstream request count")
    info = upstream_info(_get(env, path="/api/thing", scenario="apionly"), "GET /api/thing")
    eq(info["path"], "/api/thing", "path")


@test("identity headers set on every request of a keep-alive connection")
def _(env):
    gw = env.gateway("main")
    expected = env.identity("device", "device")
    with env.connect(gw, "device") as c:
        for i in range(3):
            info = upstream_info(c.request("GET", "/ka-ident/%d" % i,
                                           headers=[("X-Device-Id", "evil")]))
            check_identity(info, expected)


@test("identity header names are never duplicated by case variants")
def _(env):
    info = upstream_info(_get(env, headers=[(h.upper(), "x") for h in IDENTITY_HEADERS]))
    names = [k.lower() for k, _ in info["headers"]]
    for h in IDENTITY_HEADERS:
        check(names.count(h.lower()) <= 1, "%s appears %d times: %s"
              % (h, names.count(h.lower()), short(info["headers"], 400)))
