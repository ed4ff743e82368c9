"""Request-target canonicalisation (issue 11, critical 4): every restricted
route x every spelling of its path, sent with the bootstrap certificate.

A route is chosen on the canonical path and the canonical path is what the
upstream gets, so a spelling either means the same path as its canonical
form (and takes that route: 403 for the bootstrap certificate on a
device-only route, nothing forwarded) or is refused with 400 bad_path and a
specific message (nothing forwarded). The expected outcome of each variant
comes from a small model of the route table below, never from the gateway.
"""

from harness import check, check_json_error, eq, test, upstream_info
from testkit import config_check, expect_error, expect_nonce, issuance_config, post_json

# A config like the README's (issuance open to bootstrap, the API for device
# only), plus an internal route, with the rest open to both classes: so a
# spelling of /internal or /api/ that the gateway did not see as such (e.g.
# /%69nternal/) would take the open route and reach the upstream.
ROUTES = [
    {"path": "/certificates/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
    {"path": "/public/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
    {"path": "/api/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True},
    {"path": "/internal", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True},
    {"path": "/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
     "require_bearer": False},
]
# Device-only paths, and one bootstrap may use (its variants are forwarded
# or refused, never re-routed).
RESTRICTED = ["/api/secret", "/internal/admin/users", "/internal", "/other/x"]
ALLOWED = ["/certificates/", "/public/"]   # springboards for ../ spellings

MSG = {   # pol_target_strerror(), by reason
    "empty": "the request path contains an empty segment ('//')",
    "dot": "the request path contains a '.' or '..' segment",
    "end": "a segment of the request path ends in '.' or an encoded space",
    "param": "the request path contains ';' (path parameters are not accepted)",
    "delim": "the request path contains an encoded '/', '\\', ';', '%' or control character",
    "backslash": "the request path contains '\\'",
    "utf8": "the request path's percent-encoded bytes are not valid UTF-8",
    "escape": "the request path contains a '%' that is not followed by two hex digits",
    "char": "the request path contains a character that must be percent-encoded",
}


def _route(path, nocase=False):
    """The route the model picks for a canonical path (longest segment-aware prefix)."""
    best = None
    cmp_path = path.lower() if nocase else path
    for r in ROUTES:
        p = r["path"].lower() if nocase else r["path"]
        if cmp_path.startswith(p) and (len(p) == len(path) or p.endswith("/") or path[len(p)] == "/"):
            if best is None or len(p) > len(best["path"]):
                best = r
    return best


def _split(p):
    """'/internal/admin/users' -> ('internal', '/admin/users')."""
    seg, _, rest = p[1:].partition("/")
    return seg, ("/" + rest) if rest or p[1:].endswith("/") else ""


def _enc(c, upper=False):
    return ("%%%02X" if upper else "%%%02x") % ord(c)


def spellings(p):
    """(label, target, expected) for the restricted path p. expected is the
    canonical path, or ("bad_path", reason) for a refused spelling."""
    seg, rest = _split(p)
    out = [
        ("as is", p, p),
        ("first letter percent-encoded", "/" + _enc(seg[0]) + seg[1:] + rest, p),
        ("segment fully percent-encoded", "/" + "".join(_enc(c, True) for c in seg) + rest, p),
        ("leading //", "/" + p, ("bad_path", "empty")),
        ("trailing '.' on the segment", "/" + seg + "." + rest, ("bad_path", "end")),
        ("trailing %2e on the segment", "/" + seg + "%2e" + rest, ("bad_path", "end")),
        ("trailing %20 on the segment", "/" + seg + "%20" + rest, ("bad_path", "end")),
        (";param on the segment", "/" + seg + ";jsessionid=1" + rest, ("bad_path", "param")),
        ("/./ before", "/." + p, ("bad_path", "dot")),
        ("%2e segment before", "/%2e" + p, ("bad_path", "dot")),
        ("encoded %2F inside", "/" + seg + "%2F" + rest.lstrip("/"), ("bad_path", "delim")),
    ]
    if rest:
        out.append(("// after the segment", "/" + seg + "/" + rest, ("bad_path", "empty")))
        out.append(("/./ after the segment", "/" + seg + "/." + rest, ("bad_path", "dot")))
    for a in ALLOWED:
        a = a.rstrip("/")
        out += [
            ("..; from " + a, a + "/..;" + p, ("bad_path", "param")),
            ("/x/..;/ from " + a, a + "/x/..;" + p, ("bad_path", "param")),
            (".. from " + a, a + "/.." + p, ("bad_path", "dot")),
            ("%2e%2e from " + a, a + "/%2e%2e" + p, ("bad_path", "dot")),
            (".%2E from " + a, a + "/.%2E" + p, ("bad_path", "dot")),
            ("%2E. from " + a, a + "/%2E." + p, ("bad_path", "dot")),
            ("%2f..%2f from " + a, a + "%2f..%2f" + p[1:], ("bad_path", "delim")),
            ("%5c..%5c from " + a, a + "%5c..%5c" + p[1:], ("bad_path", "delim")),
            ("%252e%252e from " + a, a + "/%252e%252e" + p, ("bad_path", "delim")),
            ("%3b from " + a, a + "/..%3b" + p, ("bad_path", "delim")),
            ("%00 from " + a, a + "/%00/.." + p, ("bad_path", "delim")),
            ("%c0%af overlong slash from " + a, a + "/..%c0%af" + p[1:], ("bad_path", "utf8")),
            ("\\..\\ from " + a, a + "\\..\\" + p[1:], ("bad_path", "backslash")),
            ("// then .. from " + a, a + "//.." + p, ("bad_path", "empty")),
        ]
    return out


def case_spellings(p):
    seg, rest = _split(p)
    return [
        ("upper case", p.upper(), p.upper()),
        ("mixed case", "/" + seg[0].upper() + seg[1:] + rest, "/" + seg[0].upper() + seg[1:] + rest),
        ("encoded capital", "/" + _enc(seg[0].upper()) + seg[1:] + rest,
         "/" + seg[0].upper() + seg[1:] + rest),
    ]


def _send(env, gw, target, cert="bootstrap"):
    with env.connect(gw, cert) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target).encode("latin-1"))
        return c.read_response()


def _check_variant(env, gw, label, target, expected, nocase=False):
    what = "%s: GET %s" % (label, target)
    before = env.upstream_count()
    resp = _send(env, gw, target)
    if isinstance(expected, tuple):
        expect_error(env, resp, before, 400, "bad_path", what, MSG[expected[1]])
        return
    r = _route(expected, nocase)
    if "bootstrap" in r["allow_classes"]:
        info = upstream_info(resp, what)
        eq(info["path"], expected, what + ": path the upstream got")
        return
    expect_error(env, resp, before, 403, "class_not_allowed", what + " (takes route %s)" % r["path"])


def _gateway(env, name, http=None):
    cfg = env.config()
    cfg["routes"] = ROUTES
    if http:
        cfg["http"] = http
    return env.start_gateway(name, cfg)


@test("paths: every restricted route x every spelling, bootstrap certificate: 403 or 400 bad_path")
def _(env):
    gw = _gateway(env, "paths")
    try:
        n = 0
        for p in RESTRICTED:
            for label, target, expected in spellings(p) + case_spellings(p):
                _check_variant(env, gw, label, target, expected)
                n += 1
        check(n > 100, "only %d variants generated" % n)
    finally:
        gw.stop()


@test("paths: http.path_case insensitive: case variants take the route they spell")
def _(env):
    gw = _gateway(env, "paths-nocase", {"path_case": "insensitive"})
    try:
        for p in RESTRICTED:
            for label, target, expected in case_spellings(p) + spellings(p)[:3]:
                r = _route(expected, True)
                check(r["path"] == _route(p)["path"], "model: %s takes %s" % (target, r["path"]))
                _check_variant(env, gw, label, target, expected, nocase=True)
        # an allowed route in another case is forwarded as written (canonical, case kept)
        info = upstream_info(_send(env, gw, "/PUBLIC/%7eX"), "GET /PUBLIC/%7eX")
        eq(info["path"], "/PUBLIC/~X", "path the upstream got")
    finally:
        gw.stop()


@test("paths: http.path_empty_segments merge: // spellings take the merged route")
def _(env):
    gw = _gateway(env, "paths-merge", {"path_empty_segments": "merge"})
    try:
        for p in RESTRICTED:
            seg, rest = _split(p)
            for label, target in [("leading //", "/" + p), ("leading ///", "//" + p),
                                  ("// after the segment", "/" + seg + "//" + rest)]:
                _check_variant(env, gw, label, target, p)
        info = upstream_info(_send(env, gw, "//public//a///b?x=//"), "GET //public//a///b?x=//")
        eq(info["path"], "/public/a/b?x=//", "path the upstream got (query kept)")
        _check_variant(env, gw, ".. still refused", "/certificates//../api/secret", ("bad_path", "dot"))
    finally:
        gw.stop()


@test("paths: README config: GET /certificates/..;/api/secret with the bootstrap certificate: 400")
def _(env):
    gw = env.start_gateway("paths-readme", env.config())   # the README's two routes
    try:
        for target, reason in [("/certificates/..;/api/secret", "param"),
                               ("/certificates/..%3b/api/secret", "delim"),
                               ("/certificates/%2e%2e/api/secret", "dot"),
                               ("/certificates/x/..;/api/secret", "param"),
                               ("//api/secret", "empty")]:
            _check_variant(env, gw, "README config", target, ("bad_path", reason))
        with env.connect(gw, "bootstrap") as c:
            c.send(b"GET /certificates/..;/api/secret HTTP/1.1\r\nHost: localhost\r\n\r\n")
            check_json_error(c.read_response(), 400, "keep-alive GET /certificates/..;/api/secret")
            check(c.is_closed(2.0), "connection left open after 400 bad_path")
        before = env.upstream_count()
        expect_error(env, _send(env, gw, "/%61pi/secret"), before, 403, "class_not_allowed",
                     "GET /%61pi/secret")
    finally:
        gw.stop()


@test("paths: an allowed request reaches the upstream with the canonical path and the query as sent")
def _(env):
    gw = _gateway(env, "paths-allowed")
    try:
        cases = [
            ("/certificates/%7Euser/%41b", "/certificates/~user/Ab"),
            ("/certificates/%7euser?x=%7e&y=..;//", "/certificates/~user?x=%7e&y=..;//"),
            ("/public/a%3fb%2a", "/public/a%3Fb%2A"),
            ("/public/caf%c3%a9", "/public/caf%C3%A9"),
            ("/%70ublic/%2D%2E%5F", "/public/-._"),
            ("/public/.well-known/x", "/public/.well-known/x"),
        ]
        for target, canonical in cases:
            info = upstream_info(_send(env, gw, target), "GET " + target)
            eq(info["path"], canonical, "GET %s: path the upstream got" % target)
        # the device certificate gets the canonical path on a device route too
        with env.connect(gw, "device") as c:
            resp = c.request("GET", "/%61pi/%7Ex")
            eq(upstream_info(resp, "device GET /%61pi/%7Ex")["path"], "/api/~x", "path the upstream got")
    finally:
        gw.stop()


@test("paths: targets llhttp lets through but that are not canonical: exact 400 bad_path")
def _(env):
    gw = _gateway(env, "paths-misc")
    try:
        for target, reason in [("/public/a%zz", "escape"), ("/public/a%2", "escape"),
                               ("/public/a\"b", "char"), ("/public/a|b", "char"),
                               ("/public/a%0d%0ab", "delim"), ("/public/a%e2%82", "utf8")]:
            _check_variant(env, gw, "misc", target, ("bad_path", reason))
    finally:
        gw.stop()


@test("paths: the issuance routes match on the canonical path: /certificates/%63hallenge is the challenge")
def _(env):
    cfg = env.config()
    cfg["issuance"] = issuance_config(env, {"feature_phone": {"provider": "refuse"}})
    gw = env.start_gateway("paths-issuance", cfg)
    try:
        for target in ["/certificates/%63hallenge", "/%63ertificates/c%68allenge",
                       "/certificates/challenge?x=%7e"]:
            before = env.upstream_count()
            with env.connect(gw, "bootstrap") as c:
                resp = post_json(c, target)
            expect_nonce(env, resp, before, "POST " + target)
        for target, reason in [("/certificates/challenge;x", "param"), ("/certificates//challenge", "empty"),
                               ("/certificates/x/../challenge", "dot"), ("/certificates/challenge.", "end")]:
            before = env.upstream_count()
            with env.connect(gw, "bootstrap") as c:
                resp = post_json(c, target)
            expect_error(env, resp, before, 400, "bad_path", "POST " + target, MSG[reason])
    finally:
        gw.stop()


@test("paths: route paths and issuance.path_prefix must be canonical: --check refuses others")
def _(env):
    for route_path, why in [("/%7Euser/", "may contain only letters, digits"),
                            ("/api//v1", 'must not contain "//"'),
                            ("/api/./v1", "must not have a '.' or '..' segment"),
                            ("/a;b", "may contain only letters, digits")]:
        cfg = env.config()
        cfg["routes"] = [{"path": route_path, "upstream": "echo", "allow_classes": ["device"]}]
        rc, out = config_check(env, cfg, "paths-check")
        eq(rc, 2, "--check of routes[0].path %r: exit status" % route_path)
        check('routes[0].path: path "%s" %s' % (route_path, why) in out,
              "--check of %r: message not found in: %s" % (route_path, out))
    for prefix in ["/certificates//", "/cert/../x/", "/cert%73/"]:
        cfg = env.config()
        cfg["issuance"] = {"path_prefix": prefix, "ca_cert": env.pki("device-ca.crt"),
                           "ca_key": env.pki("device-ca.key"),
                           "platforms": {"feature_phone": {"provider": "refuse"}}}
        rc, out = config_check(env, cfg, "paths-check")
        eq(rc, 2, "--check of issuance.path_prefix %r: exit status" % prefix)
        check("issuance.path_prefix: expected a path that starts and ends with '/'" in out and prefix in out,
              "--check of path_prefix %r: message not found in: %s" % (prefix, out))


# Unicode look-alikes of the delimiters (policy/target.c): a backend that
# NFKC-normalises the decoded path or maps it best-fit to a code page reads
# each as the delimiter, so it would spell another path than the one routed.
LOOKALIKES = {   # code point: what it reads as
    0x2024: ".", 0x2025: "..", 0x2026: "...", 0x2044: "/", 0x2215: "/", 0x2216: "\\",
    0xFE52: ".", 0xFE54: ";", 0xFE68: "\\", 0xFF0E: ".", 0xFF0F: "/", 0xFF1B: ";",
    0xFF3C: "\\", 0xFF05: "%", 0x037E: ";", 0xFE6A: "%", 0x00A5: "\\", 0x20A9: "\\",
    0x2100: "a/c", 0x2488: "1.", 0x1F100: "0.", 0x0085: "(C1 control NEL)",
}
MSG["lookalike"] = ("the request path contains an encoded character that reads as '.', '/', '\\', ';', '%' "
                    "or a control character after Unicode normalisation (e.g. U+FF0F FULLWIDTH SOLIDUS)")
MSG["non_ascii"] = "the request path contains percent-encoded non-ASCII bytes (not accepted here)"


def _enc_utf8(cp, spelling):
    """The percent-encoded UTF-8 of cp: spelling 0 upper, 1 lower, 2 mixed hex case."""
    out = ""
    for k, b in enumerate(chr(cp).encode("utf-8")):
        upper = spelling == 0 or (spelling == 2 and k % 2 == 0)
        out += ("%%%02X" if upper else "%%%02x") % b
    return out


def lookalike_spellings(p, cp, spelling):
    """Targets that use the look-alike cp where the delimiter would go,
    around the restricted path p: each would reach p (or ..-climb to it) on
    a normalising backend, and takes a route bootstrap may use here."""
    seg, rest = _split(p)
    e = _enc_utf8(cp, spelling)
    return [
        ("as the separator after /certificates", "/certificates" + e + p[1:]),
        ("as a ../ from /public/", "/public/" + e + e + p),
        ("before the segment, next to other escapes", "/%70ublic/x" + e + "%69" + p[2:]),
        ("ending the segment (Windows strips '.')", "/" + seg + e + rest),
    ]


@test("paths: escaped Unicode look-alikes of '.', '/', '\\', ';', '%' x every restricted route: 400 bad_path")
def _(env):
    gw = _gateway(env, "paths-lookalike")
    try:
        n = 0
        for p in RESTRICTED:
            for i, (cp, reads) in enumerate(sorted(LOOKALIKES.items())):
                for j, (label, target) in enumerate(lookalike_spellings(p, cp, (i + n) % 3)):
                    what = "U+%04X (%s) %s" % (cp, reads, label)
                    _check_variant(env, gw, what, target, ("bad_path", "lookalike"))
                    n += 1
        check(n > 300, "only %d look-alike variants generated" % n)
        # the review's own spelling, on a keep-alive connection: refused and closed
        with env.connect(gw, "bootstrap") as c:
            before = env.upstream_count()
            c.send(b"GET /%EF%BC%8Finternal HTTP/1.1\r\nHost: localhost\r\n\r\n")
            expect_error(env, c.read_response(), before, 400, "bad_path", "GET /%EF%BC%8Finternal",
                         MSG["lookalike"])
            check(c.is_closed(2.0), "connection left open after 400 bad_path")
    finally:
        gw.stop()


@test("paths: UTF-8 paths that are no look-alike are forwarded (U+3002, accents, emoji, fullwidth letters)")
def _(env):
    gw = _gateway(env, "paths-utf8")
    try:
        for target, canonical in [("/public/%e3%80%82", "/public/%E3%80%82"),
                                  ("/public/%C3%A9t%C3%A9", "/public/%C3%A9t%C3%A9"),
                                  ("/public/%f0%9f%98%80", "/public/%F0%9F%98%80"),
                                  ("/public/%EF%BD%89", "/public/%EF%BD%89")]:
            info = upstream_info(_send(env, gw, target), "GET " + target)
            eq(info["path"], canonical, "GET %s: path the upstream got" % target)
    finally:
        gw.stop()


@test("paths: http.path_non_ascii refuse: every escaped byte >= 0x80 is 400 bad_path, ASCII still served")
def _(env):
    gw = _gateway(env, "paths-ascii", {"path_non_ascii": "refuse"})
    try:
        for target in ["/public/caf%C3%A9", "/public/%e3%80%82", "/public/%EF%BD%89nternal",
                       "/%EF%BD%89nternal/admin/users", "/public/%c0%af", "/public/%F0%9F%98%80"]:
            _check_variant(env, gw, "path_non_ascii: refuse", target, ("bad_path", "non_ascii"))
        for target, canonical in [("/public/%7e%20x?q=%C3%A9", "/public/~%20x?q=%C3%A9"),
                                  ("/certificates/%41", "/certificates/A")]:
            info = upstream_info(_send(env, gw, target), "GET " + target)
            eq(info["path"], canonical, "GET %s: path the upstream got" % target)
        _check_variant(env, gw, "path_non_ascii: refuse, ASCII encoded delimiter", "/public/a%2Fb",
                       ("bad_path", "delim"))
    finally:
        gw.stop()
    rc, out = config_check(env, dict(env.config(), http={"path_non_ascii": "normalise"}), "paths-ascii-check")
    eq(rc, 2, "--check of http.path_non_ascii: normalise: exit status")
    check('http.path_non_ascii: expected one of: allow, refuse, got "normalise"' in out,
          "--check message not found in: %s" % out)


@test("paths: OPTIONS * is answered 501 not_implemented by the gateway; other methods with '*' are 400")
def _(env):
    gw = _gateway(env, "paths-asterisk")
    try:
        for cert in ["bootstrap", "device"]:
            with env.connect(gw, cert) as c:
                before = env.upstream_count()
                c.send(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")
                expect_error(env, c.read_response("OPTIONS"), before, 501, "not_implemented",
                             "%s: OPTIONS *" % cert,
                             "OPTIONS * is not served; send OPTIONS with the path of a route instead")
        for method in ["GET", "HEAD", "POST", "DELETE"]:
            with env.connect(gw, "bootstrap") as c:
                before = env.upstream_count()
                body = b"Content-Length: 0\r\n" if method == "POST" else b""
                c.send(method.encode() + b" * HTTP/1.1\r\nHost: localhost\r\n" + body + b"\r\n")
                resp = c.read_response(method)
                if method == "HEAD":
                    eq(resp.status, 400, "HEAD *: status")
                    eq(env.upstream_count(), before, "HEAD *: requests that reached the upstream")
                    continue
                expect_error(env, resp, before, 400, "bad_path", method + " *",
                             "the request target must be a path starting with '/'")
        with env.connect(gw, "bootstrap") as c:   # OPTIONS of a path is forwarded as before
            c.send(b"OPTIONS /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            eq(upstream_info(c.read_response("OPTIONS"), "OPTIONS /public/x")["path"], "/public/x",
               "OPTIONS /public/x: path the upstream got")
    finally:
        gw.stop()
