"""Host canonicalisation and route choice (issue 11 review: host-specific
routes, prefixes ending in '/', http.path_case and the issuance endpoints).

A route naming a host matches the canonical Host (lowercase, one trailing
dot stripped, IPv6 in RFC 5952 form, port not part of it); anything that is
not a host name, a canonical dotted quad or a bracketed IPv6 address is
refused with 400 bad_host. So every spelling of a restricted host either
takes the restricted route (403 for the bootstrap certificate, nothing
forwarded) or is refused (400 bad_host, nothing forwarded), and the upstream
receives the canonical Host (with the port, if one was sent). The expected
outcome of each spelling comes from the generator below, never from the
gateway.
"""

from harness import build_request, check, check_json_error, eq, short, test, upstream_headers, upstream_info
from testkit import config_check, expect_error, expect_nonce, issuance_config

RESTRICTED_HOSTS = ["internal.example", "[::1]"]
ROUTES = [
    {"host": "internal.example", "path": "/", "upstream": "echo", "allow_classes": ["device"],
     "require_bearer": False},
    {"host": "[::1]", "path": "/", "upstream": "echo", "allow_classes": ["device"],
     "require_bearer": False},
    {"path": "/internal/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": False},
    {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
]

MSG = {   # cfg_host_strerror(), by reason
    "empty": "the Host header is empty",
    "char": "the Host header's name may contain only letters, digits, '-' and '.'",
    "label": "the Host header's name has an empty label, a label longer than 63 characters, "
             "or a label starting or ending with '-'",
    "long": "the Host header's name is longer than 253 characters",
    "ipv4": "the Host header's name ends in a number but is not an IPv4 address in dotted-quad "
            "decimal without leading zeros",
    "ipv6": "the Host header's bracketed address is not an IPv6 address",
    "port": "the Host header's port is not a decimal number from 1 to 65535",
}


def name_spellings(h):
    """(label, Host value, expected) for the host name h. expected is the
    Host the upstream must receive (the canonical host, ':port' if sent), or
    ("bad_host", reason)."""
    first, _, rest = h.partition(".")
    out = [
        ("as is", h, h),
        ("upper case", h.upper(), h),
        ("mixed case", h[0].upper() + h[1:], h),
        ("trailing dot", h + ".", h),
        ("trailing dot, upper case", h.upper() + ".", h),
        ("port", h + ":8443", h + ":8443"),
        ("trailing dot and port", h + ".:8443", h + ":8443"),
        ("port with leading zeros", h + ":08443", h + ":8443"),
        ("upper case, trailing dot and port", h.upper() + ".:443", h + ":443"),
        ("surrounding spaces (OWS)", "  " + h + ".  ", h),
        ("two trailing dots", h + "..", ("bad_host", "label")),
        ("leading dot", "." + h, ("bad_host", "label")),
        ("empty label", first + ".." + rest, ("bad_host", "label")),
        ("label starting with '-'", "-" + h, ("bad_host", "label")),
        ("label ending with '-'", first + "-." + rest, ("bad_host", "label")),
        ("label over 63", "a" * 64 + "." + h, ("bad_host", "label")),
        ("name over 253", ("a" * 63 + ".") * 4 + h, ("bad_host", "long")),
        ("dot as %2E", first + "%2E" + rest, ("bad_host", "char")),
        ("dot as %2e", first + "%2e" + rest, ("bad_host", "char")),
        ("letter as %69", "%%%02x" % ord(h[0]) + h[1:], ("bad_host", "char")),
        ("dot as '_'", first + "_" + rest, ("bad_host", "char")),
        ("userinfo", "user@" + h, ("bad_host", "char")),
        ("a path", h + "/x", ("bad_host", "char")),
        ("a backslash", h + "\\x", ("bad_host", "char")),
        ("two hosts", h + ",other.example", ("bad_host", "char")),
        ("inner space", first + " ." + rest, ("bad_host", "char")),
        ("empty port", h + ":", ("bad_host", "port")),
        ("port 0", h + ":0", ("bad_host", "port")),
        ("port 65536", h + ":65536", ("bad_host", "port")),
        ("two ports", h + ":80:80", ("bad_host", "port")),
        ("named port", h + ":https", ("bad_host", "port")),
        ("signed port", h + ":+443", ("bad_host", "port")),
        ("trailing dot, empty port", h + ".:", ("bad_host", "port")),
        ("port only", ":8443", ("bad_host", "empty")),
    ]
    return out


def ipv6_spellings(h):
    """The same for the bracketed IPv6 literal "[::1]"."""
    check(h == "[::1]", "generator: only [::1] is modelled")
    return [
        ("as is", h, h),
        ("port", h + ":8443", h + ":8443"),
        ("one zero group written", "[0::1]", h),
        ("every group written", "[0:0:0:0:0:0:0:1]", h),
        ("every group written, leading zeros, port", "[0000:0000:0000:0000:0000:0000:0000:0001]:443",
         h + ":443"),
        ("zero before ::", "[0::0:1]", h),
        ("zone id", "[::1%25lo]", ("bad_host", "ipv6")),
        ("raw zone id", "[::1%lo]", ("bad_host", "ipv6")),
        ("IPvFuture", "[v1.1]", ("bad_host", "ipv6")),
        ("no closing bracket", "[::1", ("bad_host", "ipv6")),
        ("empty brackets", "[]", ("bad_host", "ipv6")),
        ("nine groups", "[1:2:3:4:5:6:7:8:9]", ("bad_host", "ipv6")),
        ("bytes after ]", h + "x", ("bad_host", "port")),
        ("empty port", h + ":", ("bad_host", "port")),
    ]


def other_spellings():
    """Hosts no restricted route names, and non-canonical IPv4 forms: the
    open route (bootstrap 200, canonical Host forwarded) or 400."""
    return [
        ("another name", "Other.Example.", "other.example"),
        ("a longer name", "internal.example.com", "internal.example.com"),
        ("a shorter name", "internal.exampl", "internal.exampl"),
        ("localhost with port", "LOCALHOST:8443", "localhost:8443"),
        ("dotted quad", "127.0.0.1", "127.0.0.1"),
        ("dotted quad, trailing dot, port", "127.0.0.1.:8443", "127.0.0.1:8443"),
        ("other IPv6", "[2001:DB8:0:0:0:0:0:1]", "[2001:db8::1]"),
        ("numeric label inside", "1.internal.example", "1.internal.example"),
        ("short IPv4", "127.1", ("bad_host", "ipv4")),
        ("hex IPv4 label", "0x7f.0.0.1", ("bad_host", "ipv4")),
        ("hex and short IPv4", "0x7f.1", ("bad_host", "ipv4")),
        ("IPv4 as one number", "2130706433", ("bad_host", "ipv4")),
        ("IPv4 with leading zeros", "127.000.000.001", ("bad_host", "ipv4")),
        ("octal-looking IPv4", "0177.0.0.1", ("bad_host", "ipv4")),
        ("IPv4 over 255", "256.0.0.1", ("bad_host", "ipv4")),
        ("five parts", "1.2.3.4.5", ("bad_host", "ipv4")),
        ("numeric last label", "internal.123", ("bad_host", "ipv4")),
        ("IPv4 in brackets", "[127.0.0.1]", ("bad_host", "ipv6")),
    ]


def _canon_host_part(expected):
    if expected.startswith("["):
        return expected[:expected.index("]") + 1]
    return expected.split(":")[0]


def _gateway(env, name, routes=None, extra=None):
    cfg = env.config()
    cfg["routes"] = routes or ROUTES
    for k, v in (extra or {}).items():
        cfg[k] = v
    return env.start_gateway(name, cfg)


def _send(env, gw, host, cert="bootstrap", method="GET", target="/x", body=None):
    with env.connect(gw, cert) as c:
        c.send(build_request(method, target, body=body, host=host))
        return c.read_response(method)


def _check_host(env, gw, label, host, expected):
    """One spelling with the bootstrap certificate, and (if it reaches a
    restricted route or the upstream) with the device certificate."""
    what = "%s: Host %r" % (label, host)
    before = env.upstream_count()
    resp = _send(env, gw, host)
    if isinstance(expected, tuple):
        expect_error(env, resp, before, 400, "bad_host", what, MSG[expected[1]])
        return 0
    restricted = _canon_host_part(expected) in RESTRICTED_HOSTS
    if restricted:
        expect_error(env, resp, before, 403, "class_not_allowed",
                     what + " (takes the route for %s)" % _canon_host_part(expected))
        resp = _send(env, gw, host, cert="device")
    info = upstream_info(resp, what + (" (device)" if restricted else ""))
    eq(upstream_headers(info, "host"), [expected], what + ": Host the upstream got")
    return 1


@test("hosts: every spelling of a restricted route's host: 403 on its route or 400 bad_host; canonical Host forwarded")
def _(env):
    gw = _gateway(env, "hosts")
    try:
        n = forwarded = 0
        for h in RESTRICTED_HOSTS:
            gen = ipv6_spellings(h) if h.startswith("[") else name_spellings(h)
            for label, host, expected in gen:
                forwarded += _check_host(env, gw, label, host, expected)
                n += 1
        for label, host, expected in other_spellings():
            forwarded += _check_host(env, gw, label, host, expected)
            n += 1
        check(n > 60 and forwarded > 15, "only %d variants (%d forwarded) generated" % (n, forwarded))
    finally:
        gw.stop()


@test("hosts: the review's spellings of internal.example with the bootstrap certificate: 403 or 400, never the upstream")
def _(env):
    gw = _gateway(env, "hosts-review")
    try:
        for host, status, code in [("internal.example", 403, "class_not_allowed"),
                                   ("internal.example.", 403, "class_not_allowed"),
                                   ("internal.example.:8443", 403, "class_not_allowed"),
                                   ("internal%2Eexample", 400, "bad_host")]:
            before = env.upstream_count()
            expect_error(env, _send(env, gw, host), before, status, code, "Host %s" % host)
        # a bad Host on a kept-alive connection: answered, then the connection closes
        with env.connect(gw, "bootstrap") as c:
            c.send(build_request("GET", "/x", host="internal%2Eexample"))
            check_json_error(c.read_response(), 400, "keep-alive Host internal%2Eexample")
            check(c.is_closed(2.0), "connection left open after 400 bad_host")
    finally:
        gw.stop()


@test("hosts: routes[].host must be written canonically: --check gives the canonical spelling")
def _(env):
    for host, msg in [("Internal.Example", 'host "Internal.Example" is not in canonical form'),
                      ("internal.example.", 'write "internal.example"'),
                      ("[0:0:0:0:0:0:0:1]", 'write "[::1]"'),
                      ("internal%2Eexample", 'invalid host "internal%2Eexample": ' + MSG["char"]),
                      ("internal_example", 'invalid host "internal_example": ' + MSG["char"]),
                      ("127.1", 'invalid host "127.1": ' + MSG["ipv4"]),
                      ("internal.example:8443", "host must not include a port")]:
        cfg = env.config()
        cfg["routes"] = [{"path": "/", "host": host, "upstream": "echo", "allow_classes": ["device"]}]
        rc, out = config_check(env, cfg, "hosts-check")
        eq(rc, 2, "--check of routes[0].host %r: exit status" % host)
        check("routes[0].host: " in out and msg in out,
              "--check of routes[0].host %r: %r not found in: %s" % (host, msg, out))


# A route prefix ending in '/' also covers the path without the slash.
SLASH_ROUTES = [
    {"path": "/internal/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": False},
    {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
]


@test("hosts: a route /internal/ also covers /internal and /internal?query")
def _(env):
    gw = _gateway(env, "hosts-slash", SLASH_ROUTES)
    try:
        for target in ["/internal", "/internal?x=1", "/internal/", "/internal/x", "/%69nternal"]:
            before = env.upstream_count()
            expect_error(env, _send(env, gw, "localhost", target=target), before, 403,
                         "class_not_allowed", "bootstrap GET %s (takes /internal/)" % target)
            info = upstream_info(_send(env, gw, "localhost", cert="device", target=target),
                                 "device GET " + target)
            eq(info["path"], target.replace("%69", "i"), "device GET %s: path the upstream got" % target)
        for target in ["/internals", "/interna", "/Internal", "/x/internal"]:
            info = upstream_info(_send(env, gw, "localhost", target=target), "bootstrap GET " + target)
            eq(info["path"], target, "bootstrap GET %s (takes /): path the upstream got" % target)
    finally:
        gw.stop()


def _open_route(path, host=None, classes=("bootstrap", "device")):
    r = {"path": path, "upstream": "echo", "allow_classes": list(classes), "require_bearer": False}
    if host:
        r["host"] = host
    return r


def _issuance_gateway(env, name, routes, http=None):
    """A gateway with issuance (and a refusing platform) behind these routes."""
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"feature_phone": {"provider": "refuse"}})
    if http:
        cfg["http"] = http
    cfg["routes"] = routes
    return env.start_gateway(name, cfg)


_GENERIC_ROUTES = [_open_route("/certificates/"), _open_route("/")]


@test("hosts: http.path_case insensitive: /Certificates/issue is the issuance endpoint, never forwarded")
def _(env):
    gw = _issuance_gateway(env, "hosts-issuance-nocase", _GENERIC_ROUTES,
                          {"path_case": "insensitive"})
    try:
        for method, target in [("POST", "/Certificates/challenge"), ("POST", "/CERTIFICATES/CHALLENGE"),
                               ("GET", "/certificates/Challenge"), ("POST", "/Certificates/Challenge?x=1")]:
            what = "%s %s" % (method, target)
            before = env.upstream_count()
            resp = _send(env, gw, "localhost", method=method, target=target,
                         body=b"{}" if method == "POST" else None)
            expect_nonce(env, resp, before, what)
        for target in ["/Certificates/issue", "/certificates/ISSUE", "/CERTIFICATES/Renew"]:
            what = "POST " + target
            before = env.upstream_count()
            resp = _send(env, gw, "localhost", method="POST", target=target, body=b"{}")
            check(resp.status != 200, "%s: answered 200 (forwarded?): %s" % (what, short(resp.body)))
            expect_error(env, resp, before, 403 if "enew" in target else 400,
                         "class_not_allowed" if "enew" in target else "bad_request", what)
        # another path under the prefix is still forwarded, as written
        info = upstream_info(_send(env, gw, "localhost", method="POST", target="/Certificates/other",
                                   body=b"{}"), "POST /Certificates/other")
        eq(info["path"], "/Certificates/other", "POST /Certificates/other: path the upstream got")
    finally:
        gw.stop()


@test("hosts: http.path_case sensitive (default): /Certificates/challenge is another path")
def _(env):
    gw = _issuance_gateway(env, "hosts-issuance-case", _GENERIC_ROUTES)
    try:
        info = upstream_info(_send(env, gw, "localhost", method="POST", target="/Certificates/challenge",
                                   body=b"{}"), "POST /Certificates/challenge")
        eq(info["path"], "/Certificates/challenge", "path the upstream got")
        before = env.upstream_count()
        resp = _send(env, gw, "localhost", method="POST", target="/certificates/challenge", body=b"{}")
        expect_nonce(env, resp, before, "POST /certificates/challenge")
    finally:
        gw.stop()


# A host named by any route chooses ONLY among the routes naming it (server,
# then location, as nginx): the generic routes serve only the other hosts.
CONFINE_ROUTES = [
    {"host": "internal.example", "path": "/", "upstream": "echo", "allow_classes": ["device"],
     "require_bearer": False},
    {"path": "/certificates/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
    {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
]


@test("hosts: a longer generic prefix does not take a named host's request: bootstrap GET /certificates/x on internal.example is 403")
def _(env):
    gw = _gateway(env, "hosts-confine", CONFINE_ROUTES)
    try:
        for host in ["internal.example", "Internal.Example.", "internal.example:8443"]:
            for target in ["/certificates/x", "/certificates/", "/certificates", "/x"]:
                what = "bootstrap GET %s, Host %s" % (target, host)
                before = env.upstream_count()
                expect_error(env, _send(env, gw, host, target=target), before, 403, "class_not_allowed",
                             what + " (takes internal.example's route)")
        info = upstream_info(_send(env, gw, "internal.example", cert="device", target="/certificates/x"),
                             "device GET /certificates/x on internal.example")
        eq(upstream_headers(info, "host"), ["internal.example"], "device: Host the upstream got")
        for host in ["other.example", "localhost"]:
            info = upstream_info(_send(env, gw, host, target="/certificates/x"),
                                 "bootstrap GET /certificates/x on " + host)
            eq(upstream_headers(info, "host"), [host], "bootstrap on %s: Host the upstream got" % host)
    finally:
        gw.stop()


METHOD_ROUTES = [
    {"host": "admin.example", "path": "/", "methods": ["GET"], "upstream": "echo",
     "allow_classes": ["bootstrap", "device"], "require_bearer": False},
    {"host": "admin.example", "path": "/rw/", "methods": ["PUT", "GET"], "upstream": "echo",
     "allow_classes": ["bootstrap", "device"], "require_bearer": False},
    {"host": "narrow.example", "path": "/only/", "upstream": "echo",
     "allow_classes": ["bootstrap", "device"], "require_bearer": False},
    {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
]


@test("hosts: a method a named host's route excludes is 405 with Allow, never the generic route")
def _(env):
    gw = _gateway(env, "hosts-methods", METHOD_ROUTES)
    try:
        for method, target, allow in [("POST", "/x", "GET"), ("DELETE", "/", "GET"),
                                      ("PUT", "/x", "GET"), ("POST", "/rw/a", "PUT, GET")]:
            for cert in ["bootstrap", "device"]:
                what = "%s %s %s on admin.example" % (cert, method, target)
                before = env.upstream_count()
                resp = _send(env, gw, "admin.example", cert=cert, method=method, target=target,
                             body=b"{}" if method in ("POST", "PUT") else None)
                expect_error(env, resp, before, 405, "method_not_allowed", what)
                eq(resp.header_all("allow"), [allow], what + ": Allow")
        for method, target in [("GET", "/x"), ("PUT", "/rw/a")]:
            info = upstream_info(_send(env, gw, "admin.example", method=method, target=target,
                                       body=b"{}" if method == "PUT" else None),
                                 "%s %s on admin.example" % (method, target))
            eq(info["path"], target, "%s %s on admin.example: path" % (method, target))
        info = upstream_info(_send(env, gw, "other.example", method="POST", target="/x", body=b"{}"),
                             "POST /x on other.example (generic /)")
        eq(upstream_headers(info, "host"), ["other.example"], "POST on other.example: Host")
        # a path none of the named host's routes cover: 404, not the generic /
        for target in ["/x", "/onlyx", "/"]:
            before = env.upstream_count()
            expect_error(env, _send(env, gw, "narrow.example", target=target), before, 404, "no_route",
                         "GET %s on narrow.example" % target)
    finally:
        gw.stop()


_NAMED_HOST_ROUTES = [
    _open_route("/api/", host="narrow.example"),
    _open_route("/", host="internal.example", classes=("device",)),
    _open_route("/certificates/"),
    _open_route("/"),
]


@test("hosts: the issuance endpoints on a named host go through that host's routes only (404 without one, its class rules)")
def _(env):
    gw = _issuance_gateway(env, "hosts-issuance-named", _NAMED_HOST_ROUTES)
    try:
        for ep in ["challenge", "issue", "renew"]:
            for cert in ["bootstrap", "device"]:
                what = "%s POST /certificates/%s on narrow.example" % (cert, ep)
                before = env.upstream_count()
                resp = _send(env, gw, "narrow.example", cert=cert, method="POST",
                             target="/certificates/" + ep, body=b"{}")
                expect_error(env, resp, before, 404, "no_route", what)
        before = env.upstream_count()
        expect_error(env, _send(env, gw, "narrow.example", method="GET", target="/certificates/challenge"),
                     before, 404, "no_route", "GET /certificates/challenge on narrow.example")
        # internal.example's own / covers the prefix and admits only device
        before = env.upstream_count()
        expect_error(env, _send(env, gw, "internal.example", method="POST", target="/certificates/challenge",
                                body=b"{}"), before, 403, "class_not_allowed",
                     "bootstrap POST /certificates/challenge on internal.example")
        before = env.upstream_count()
        resp = _send(env, gw, "internal.example", cert="device", method="POST",
                     target="/certificates/challenge", body=b"{}")
        expect_nonce(env, resp, before, "device POST /certificates/challenge on internal.example")
        # hosts no route names: the generic /certificates/ route
        for host in ["localhost", "other.example"]:
            before = env.upstream_count()
            resp = _send(env, gw, host, method="POST", target="/certificates/challenge", body=b"{}")
            expect_nonce(env, resp, before, "bootstrap POST /certificates/challenge on " + host)
    finally:
        gw.stop()


@test("hosts: --check judges the issuance endpoints per host set with the request's selector")
def _(env):
    iss = issuance_config(env, {"feature_phone": {"provider": "refuse"}})
    # the only route covering the endpoints is a named host's, and it does not admit bootstrap
    cfg = env.config()
    cfg["issuance"] = iss
    cfg["routes"] = [
        {"host": "internal.example", "path": "/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False},
        {"path": "/api/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False},
    ]
    rc, out = config_check(env, cfg, "hosts-iss-check1")
    eq(rc, 2, "--check: exit status")
    check('routes[0] (path "/", host internal.example), the route that covers POST /certificates/challenge, '
          'does not allow class "bootstrap"' in out, "--check message: %s" % out)
    # the generic set covers the prefix only with another method: the route was
    # once skipped for the shorter /; now the endpoint is 405, so no route takes it
    cfg["routes"] = [
        {"path": "/certificates/", "methods": ["PUT"], "upstream": "echo",
         "allow_classes": ["bootstrap", "device"], "require_bearer": False},
        {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False},
    ]
    rc, out = config_check(env, cfg, "hosts-iss-check2")
    eq(rc, 2, "--check (methods): exit status")
    check("no route takes POST /certificates/challenge on any host: the longest routes covering it "
          "(generic routes) take only PUT (a request with POST is refused with 405 there; a shorter "
          "prefix is never tried)" in out, "--check message: %s" % out)
    # a named host without the prefix does not matter while the generic set serves it
    cfg["routes"] = [
        {"host": "narrow.example", "path": "/api/", "upstream": "echo", "allow_classes": ["device"],
         "require_bearer": False},
        {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False},
    ]
    rc, out = config_check(env, cfg, "hosts-iss-check3")
    eq(rc, 0, "--check (generic set serves issuance): exit status (%s)" % out)
