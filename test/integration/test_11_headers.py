"""Header names an upstream reads as the same name, and client-chosen trust headers.

CGI, WSGI, Rack and PHP read '_' as '-' and ignore case; lighttpd's CGI/FastCGI
environment and Apache 2.2 read every byte that is not a letter or digit as
'_'. So every spelling of a header the gateway owns is generated here: lower,
upper and mixed case, each '-' as '_' (or as any other tchar punctuation
byte: . + ~ ! * # $ % & ' ^ ` |) one at a time, and all of them. A spelling
with such a byte is refused (400 header_name_collision, nothing reaches the
upstream) whatever http.underscores_in_headers says; one of only letters,
digits and '-' is dropped and replaced by the gateway's own value. Other
names with such bytes are dropped (default), forwarded (allow) or refused
(refuse). Trust headers (Forwarded, X-Real-IP, X-Envoy-*, ...) are dropped
unless http.forward_client_headers lists them.
"""

import os
import re

from harness import (IDENTITY_HEADERS, H_DEVICE_ID, REFUSAL_ERRORS, SCENARIOS, build_request,
                     check, check_identity, check_json_error, eq, fail, test, upstream_info)
from testkit import jwt_keys

CLAIM_HEADER = "X-Token-Subject"

# Every header the gateway sets, consumes or treats as hop-by-hop, that has
# a '-' (a name without one has no other spelling: TE, Host, Upgrade ...).
# Any other name under the identity headers' common prefix (X-Client-Cert-) is
# the gateway's too: a backend may read X-Client-Cert-Verify as the verdict.
IDENTITY_PREFIXED = ["X-Client-Cert-Verify", "X-Client-Cert-Chain", "X-Client-Cert-Anything"]
OWNED = IDENTITY_HEADERS + IDENTITY_PREFIXED + [
    CLAIM_HEADER, "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Content-Length",
    "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
]
# Owned headers a client may send with any value in their own spelling: the
# gateway drops them and sets its own (the others change the framing).
OWNED_VALUES = IDENTITY_HEADERS + IDENTITY_PREFIXED + [CLAIM_HEADER, "X-Forwarded-For", "X-Forwarded-Proto"]

TRUST = [
    "Forwarded", "X-Real-IP", "True-Client-IP", "X-Client-IP", "X-Cluster-Client-IP",
    "CF-Connecting-IP", "Fastly-Client-IP", "X-Original-URL", "X-Rewrite-URL",
    "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Forwarded-Client-Cert",
    "Client-Cert", "Client-Cert-Chain", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Original-Host", "X-Host", "X-Original-Forwarded-For",
    "X-ProxyUser-Ip", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-Envoy-Original-Path",
    "X-Envoy-Internal", "X-Envoy-Expected-Rq-Timeout-Ms",
    # what TLS terminators (nginx, HAProxy, Apache, IIS ARR, AWS ALB) tell a backend
    # about the client's certificate and the scheme; X-SSL-*, SSL-Client-*,
    # X-Client-Cert*, X-ARR-*, X-Amzn-Mtls-* by prefix
    "X-SSL-Client-Verify", "X-SSL-Client-Cert", "Ssl-Client-Cert", "SSL-Client-Verify", "X-Client-Cert",
    "X-Client-Certificate", "X-ARR-ClientCert", "X-ARR-SSL", "X-Amzn-Mtls-Clientcert",
    "X-Forwarded", "X-Forwarded-Ssl", "X-Url-Scheme", "Front-End-Https", "X-Scheme",
]

# Every tchar byte (RFC 9110 token) that is not a letter, digit or '-'; '_' first.
SEPS = "_.+~!*#$%&'^`|"

# (cert, path, bearer): a device certificate on the bearer route, and a
# bootstrap certificate (no device-id SAN) on the route that takes it.
CLIENTS = [("device", "/hello", True), ("bootstrap", "/certificates/hello", False)]


def _norm(name):
    """The name as an upstream may read it: lower case, every byte other than a letter or digit as '-'."""
    return re.sub(r"[^a-z0-9]", "-", name.lower())


def seen(info, name):
    """Values the upstream received under any spelling of name."""
    return [v for k, v in info["headers"] if _norm(k) == _norm(name)]


def _cases(name):
    mixed = "".join(ch.upper() if i % 2 == 0 else ch.lower() for i, ch in enumerate(name))
    return [name.lower(), name.upper(), mixed]


def variants(name):
    """Every case (lower, upper, mixed) x '-'/'_' spelling of name, the original first."""
    out = [name]
    for base in _cases(name):
        out.append(base)
        dashes = [i for i, ch in enumerate(base) if ch == "-"]
        for i in dashes:
            out.append(base[:i] + "_" + base[i + 1:])
        if len(dashes) > 1:
            out.append(base.replace("-", "_"))
    return list(dict.fromkeys(out))


def underscore_variants(name):
    return [v for v in variants(name) if "_" in v]


def _separated(base, sep):
    """base with each '-' as sep one at a time, and all of them."""
    dashes = [i for i, ch in enumerate(base) if ch == "-"]
    out = [base[:i] + sep + base[i + 1:] for i in dashes]
    if len(dashes) > 1:
        out.append(base.replace("-", sep))
    return out


def punct_variants(name):
    """For each separator other than '_' (SEPS), each '-' of name as it one at a
    time and all of them; the case (as written, lower, upper, mixed) rotates
    with the separator, so that every separator meets several cases across
    the names without the full product (the '_' spellings have that)."""
    cases = [name] + _cases(name)
    out = []
    for k, sep in enumerate(SEPS[1:]):
        out += _separated(cases[k % len(cases)], sep)
    return list(dict.fromkeys(out))


def odd_variants(name):
    """Every '_' spelling, and every spelling with another separator."""
    return underscore_variants(name) + punct_variants(name)


def _jwks(env):
    return os.path.join(jwt_keys(env, "jwt11"), "jwks.json")


def _builder(http):
    def build(env):
        cfg = env.config()
        cfg["routes"] = [
            {"path": "/jwt/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True,
             "jwt": {"jwks_file": _jwks(env), "claims_to_headers": {"sub": CLAIM_HEADER}}},
        ] + cfg["routes"]
        if http is not None:
            cfg["http"] = http
        return cfg
    return build


# Shared gateways (started on first use, stopped with the run): each has a
# JWT route, so that a claim header exists, and the given http section.
_MODES = {
    "default": None,
    "allow": {"underscores_in_headers": "allow"},
    "refuse": {"underscores_in_headers": "refuse"},
    "drop": {"underscores_in_headers": "drop"},
    "forward": {"forward_client_headers": TRUST},
    "forward-one": {"forward_client_headers": ["X-Real-IP"]},
}
for _name, _http in _MODES.items():
    SCENARIOS["hdr-" + _name] = _builder(_http)


def _gateway(env, name):
    return env.gateway("hdr-" + name)


class Client:
    """Requests on one certificate, on a fresh connection when the last one closed;
    the TLS session is resumed so that hundreds of refusals stay quick."""

    def __init__(self, env, gw, cert, path, bearer):
        self.env, self.gw, self.cert, self.path = env, gw, cert, path
        self.bearer = env.bearer if bearer else None
        self.ctx = env.client_context(cert)
        self.session = None
        self.conn = None

    def request(self, headers, method="GET", body=None):
        if self.conn is None:
            self.conn = self.env.connect(self.gw, ctx=self.ctx, session=self.session)
        c = self.conn
        try:
            c.send(build_request(method, self.path, headers, body=body, bearer=self.bearer))
            resp = c.read_response(method)
        except REFUSAL_ERRORS as e:
            self.close()
            fail("%s: %r sent %s: no response (%r)" % (self.cert, headers, method, e))
        if c.sock.session is not None:
            self.session = c.sock.session
        if (resp.header("Connection") or "").lower() == "close":
            self.close()
        return resp

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _refused(resp, code, what):
    body = check_json_error(resp, 400, what)
    eq(body["error"], code, what + ": error code")
    return body


def _collisions(env, gw, names, value="spoofed", spellings=underscore_variants):
    """Sends each spelling (by spellings) of each name alone; every one must be
    refused with 400 header_name_collision, and none may reach the upstream."""
    before = env.upstream_count()
    problems, sent = [], 0
    for cert, path, bearer in CLIENTS:
        cl = Client(env, gw, cert, path, bearer)
        try:
            for name in names:
                for v in spellings(name):
                    sent += 1
                    resp = cl.request([(v, value)])
                    try:
                        body = _refused(resp, "header_name_collision", "%s %s" % (cert, v))
                        check(body["request_id"] != value and resp.header("X-Request-Id") != value,
                              "%s %s: the client's value became the request id" % (cert, v))
                        eq((resp.header("Connection") or "").lower(), "close", "%s %s: Connection" % (cert, v))
                    except AssertionError as e:
                        problems.append(str(e))
        finally:
            cl.close()
    if problems:
        fail("%d of %d spellings not refused as expected: %s" % (len(problems), sent, " | ".join(problems[:5])))
    eq(env.upstream_count(), before, "requests that reached the upstream (%d refused spellings)" % sent)
    return sent


def _named_refused(env, gw, named, check_message):
    """Each (name, value) of named, alone on a GET and next to the framing
    header of a POST, from every client: 400 header_name_collision, nothing
    forwarded; check_message(body, what) judges the GET's message."""
    before = env.upstream_count()
    for cert, path, bearer in CLIENTS:
        for name, value in named:
            cl = Client(env, gw, cert, path, bearer)
            try:
                what = "%s %s" % (cert, name)
                check_message(_refused(cl.request([(name, value)]), "header_name_collision", what), what)
                _refused(cl.request([(name, value)], method="POST", body=b"hello"),
                         "header_name_collision", "%s POST %s" % (cert, name))
            finally:
                cl.close()
    eq(env.upstream_count(), before, "requests that reached the upstream")


def _forward(env, gw, cert, path, bearer, headers):
    cl = Client(env, gw, cert, path, bearer)
    try:
        return upstream_info(cl.request(headers), "%s %r" % (cert, headers))
    finally:
        cl.close()


@test("header names: every _ spelling of every gateway-owned name is refused, device and bootstrap certs")
def _(env):
    gw = _gateway(env, "default")
    sent = _collisions(env, gw, OWNED)
    check(sent > 300, "expected hundreds of generated spellings, sent %d" % sent)


@test("header names: every punctuation spelling (. + ~ ! * # $ % & ' ^ ` |) of every gateway-owned name "
      "is refused, device and bootstrap certs")
def _(env):
    gw = _gateway(env, "default")
    sent = _collisions(env, gw, OWNED, spellings=punct_variants)
    check(sent > 1000, "expected over a thousand of generated spellings, sent %d" % sent)


@test("header names: every _ and punctuation spelling of every trust header is refused")
def _(env):
    gw = _gateway(env, "default")
    sent = _collisions(env, gw, TRUST, spellings=odd_variants)
    check(sent > 1500, "expected thousands of generated spellings, sent %d" % sent)


@test("header names: the spellings from the review (X.Device.Id, X+Device+Id, X~Device~Id, "
      "X!Client!Cert!Serial, X.Forwarded.For, X*Request*Id, X.Real.IP, Client.Cert, Content.Length) are refused")
def _(env):
    gw = _gateway(env, "default")
    named = [("X.Device.Id", "spoofed"), ("X+Device+Id", "spoofed"), ("X~Device~Id", "spoofed"),
             ("X!Client!Cert!Serial", "deadbeef"), ("X.Forwarded.For", "6.6.6.6"), ("X*Request*Id", "client-rid"),
             ("X.Real.IP", "6.6.6.6"), ("Client.Cert", ":abc:"), ("Content.Length", "0"),
             ("Transfer.Encoding", "chunked"), ("X.Envoy.Original.Path", "/internal"), ("X-Device.Id", "spoofed")]
    _named_refused(env, gw, named, lambda body, what: eq(
        body["message"], "a header name with '_' or other punctuation reads as one the gateway sets "
        "or drops (X_Device_Id or X.Device.Id as X-Device-Id)", what + ": message"))


@test("header names: the spellings from the issue (X_Device_Id, X-Client-Cert_Serial, X_Forwarded_For, "
      "Transfer_Encoding, Content_Length) are refused")
def _(env):
    gw = _gateway(env, "default")
    named = [("X_Device_Id", "device-evil"), ("X-Client-Cert_Serial", "deadbeef"),
             ("X_Forwarded_For", "6.6.6.6"), ("Transfer_Encoding", "chunked"), ("Content_Length", "0"),
             ("X_Request_Id", "client-rid"), ("x_client_cert_class", "device")]
    _named_refused(env, gw, named, lambda body, what: check(
        "_" in body["message"], "message says why: %r" % body["message"]))


@test("header names: a client's X_Request_Id is never used as the request id")
def _(env):
    gw = _gateway(env, "default")
    cl = Client(env, gw, "device", "/hello", True)
    try:
        resp = cl.request([("X_Request_Id", "client-chosen-id")])
        body = _refused(resp, "header_name_collision", "X_Request_Id")
        check(body["request_id"] != "client-chosen-id", "request_id is the client's: %r" % body)
        check(resp.header("X-Request-Id") not in (None, "client-chosen-id"),
              "X-Request-Id %r" % resp.header("X-Request-Id"))
        info = _forward(env, gw, "device", "/hello", True, [("X-Request-Id", "client-ok-1")])
        eq(seen(info, "X-Request-Id"), ["client-ok-1"], "a valid X-Request-Id in its own spelling is kept")
    finally:
        cl.close()


@test("header names: every case spelling of the identity, claim and forwarding headers is replaced")
def _(env):
    gw = _gateway(env, "default")
    for cert, path, bearer in CLIENTS:
        spoof = []
        for name in OWNED_VALUES:
            spoof += [(v, "spoofed-%d" % i) for i, v in enumerate(variants(name)) if "_" not in v]
        info = _forward(env, gw, cert, path, bearer, spoof)
        cls = "device" if cert == "device" else "bootstrap"
        check_identity(info, env.identity(cert, cls))
        eq(seen(info, CLAIM_HEADER), [], CLAIM_HEADER + " (no token on this route)")
        eq(seen(info, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For")
        eq(seen(info, "X-Forwarded-Proto"), ["https"], "X-Forwarded-Proto")
        leaked = [(k, v) for k, v in info["headers"] if "spoofed" in v]
        eq(leaked, [], "%s: client values that reached the upstream" % cert)
        if cert == "bootstrap":
            eq(seen(info, H_DEVICE_ID), [], "bootstrap certificate: no device id at all")


@test("header names: other names with _ are dropped by default (and with drop), others forwarded")
def _(env):
    for mode, (cert, path, bearer) in [(m, c) for m in ("default", "drop") for c in CLIENTS]:
        gw = _gateway(env, mode)
        odd = [("X_Custom_Thing", "under"), ("x_app", "under2")] + \
            [("X%sOdd%sName" % (c, c), "odd") for c in SEPS[1:]]
        info = _forward(env, gw, cert, path, bearer, odd + [("X-Custom-Thing", "dash")])
        eq(seen(info, "X-Custom-Thing"), ["dash"], "%s: X-Custom-Thing" % cert)
        eq([k for k, _ in info["headers"] if re.search(r"[^A-Za-z0-9-]", k)], [],
           "%s: names with _ or other punctuation at the upstream" % cert)


@test("header names: underscores_in_headers allow forwards other names with _ or punctuation exactly")
def _(env):
    gw = _gateway(env, "allow")
    for cert, path, bearer in CLIENTS:
        info = _forward(env, gw, cert, path, bearer, [("X_Custom_Thing", "under"), ("X-App", "dash")])
        eq([[k, v] for k, v in info["headers"] if _norm(k) == "x-custom-thing"], [["X_Custom_Thing", "under"]],
           "%s: X_Custom_Thing as sent" % cert)
        eq(seen(info, "X-App"), ["dash"], "%s: X-App" % cert)
        for c in SEPS[1:]:
            name = "X%sOdd%sName" % (c, c)
            info = _forward(env, gw, cert, path, bearer, [(name, "odd")])
            eq([[k, v] for k, v in info["headers"] if _norm(k) == "x-odd-name"], [[name, "odd"]],
               "%s: %s as sent" % (cert, name))


@test("header names: underscores_in_headers refuse: 400 underscore_in_header, nothing forwarded")
def _(env):
    gw = _gateway(env, "refuse")
    before = env.upstream_count()
    for cert, path, bearer in CLIENTS:
        cl = Client(env, gw, cert, path, bearer)
        try:
            _refused(cl.request([("X_Custom_Thing", "under")]), "underscore_in_header", cert)
            _refused(cl.request([("X-App", "1"), ("a_b", "1")]), "underscore_in_header", cert)
            for c in SEPS[1:]:
                body = _refused(cl.request([("X-App", "1"), ("X%sOdd" % c, "1")]), "underscore_in_header",
                                "%s X%sOdd" % (cert, c))
                eq(body["message"], "header names with '_' or punctuation other than '-' are not accepted",
                   "%s X%sOdd: message" % (cert, c))
        finally:
            cl.close()
    eq(env.upstream_count(), before, "requests that reached the upstream")
    info = _forward(env, gw, "device", "/hello", True, [("X-App", "1")])
    eq(seen(info, "X-App"), ["1"], "a request without _ is served")


@test("header names: collisions are refused in drop, allow and refuse modes alike")
def _(env):
    for mode in ("drop", "allow", "refuse"):
        gw = _gateway(env, mode)
        _collisions(env, gw, [H_DEVICE_ID, "X-Client-Cert-Serial", "X-Forwarded-For", "Transfer-Encoding",
                              "Content-Length", "X-Request-Id", CLAIM_HEADER, "X-Real-IP", "X-Forwarded-Host",
                              "X-Envoy-Internal"], spellings=odd_variants)


@test("trust headers: each is dropped by default, in every case spelling")
def _(env):
    gw = _gateway(env, "default")
    for cert, path, bearer in CLIENTS:
        for k in range(0, len(TRUST), 8):   # within limits.max_headers
            names = TRUST[k:k + 8]
            sent = []
            for name in names:
                sent += [(v, "client-%d" % i) for i, v in enumerate(variants(name)) if "_" not in v]
            info = _forward(env, gw, cert, path, bearer, sent)
            for name in names:
                eq(seen(info, name), [], "%s: %s at the upstream" % (cert, name))
            eq(seen(info, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For is the gateway's")


@test("trust headers: each passes when http.forward_client_headers lists it; its _ spellings are refused")
def _(env):
    gw = _gateway(env, "forward")
    for cert, path, bearer in CLIENTS:
        info = _forward(env, gw, cert, path, bearer, [(n, "v-" + n.lower()) for n in TRUST])
        for name in TRUST:
            eq([[k, v] for k, v in info["headers"] if _norm(k) == _norm(name)], [[name, "v-" + name.lower()]],
               "%s: %s forwarded as sent" % (cert, name))
    _collisions(env, gw, ["X-Real-IP", "X-Forwarded-Host", "Client-Cert", "X-HTTP-Method-Override",
                          "X-Envoy-Internal", "X-Original-Host"], spellings=odd_variants)
    # listing some does not forward the others
    gw2 = _gateway(env, "forward-one")
    info = _forward(env, gw2, "device", "/hello", True, [("X-Real-IP", "1.2.3.4"), ("Forwarded", "for=6.6.6.6"),
                                                        ("X-Forwarded-Host", "evil.example")])
    eq(seen(info, "X-Real-IP"), ["1.2.3.4"], "X-Real-IP")
    eq(seen(info, "Forwarded") + seen(info, "X-Forwarded-Host"), [], "the trust headers not listed")


@test("trust headers: X-Envoy-* by prefix, X-Original-Host, X-Host, X-ProxyUser-Ip are dropped; Via is forwarded")
def _(env):
    gw = _gateway(env, "default")
    for cert, path, bearer in CLIENTS:
        info = _forward(env, gw, cert, path, bearer, [
            ("x-envoy-original-path", "/internal/x"), ("x-envoy-internal", "true"),
            ("X-Envoy-Some-Future-Header", "1"), ("X-Original-Host", "evil.example"), ("X-Host", "evil.example"),
            ("X-Original-Forwarded-For", "6.6.6.6"), ("X-ProxyUser-Ip", "6.6.6.6"),
            ("Via", "1.1 edge.example"), ("X-Envoy", "not-a-prefix-match")])
        eq([k for k, _ in info["headers"] if _norm(k).startswith("x-envoy-")], [], "%s: X-Envoy-* at the upstream" % cert)
        for name in ("X-Original-Host", "X-Host", "X-Original-Forwarded-For", "X-ProxyUser-Ip"):
            eq(seen(info, name), [], "%s: %s at the upstream" % (cert, name))
        eq(seen(info, "Via"), ["1.1 edge.example"], "%s: Via (informational) forwarded" % cert)
        eq(seen(info, "X-Envoy"), ["not-a-prefix-match"], "%s: X-Envoy alone is no X-Envoy-*" % cert)


@test("trust headers: the review's spellings (X-Client-Cert-Verify, X-SSL-Client-Verify, X-Forwarded, "
      "Front-End-Https, ...) never reach the upstream next to the gateway's identity")
def _(env):
    gw = _gateway(env, "default")
    sent = [("X-Client-Cert-Verify", "SUCCESS"), ("X-Client-Cert-Chain", "-----BEGIN"),
            ("X-SSL-Client-Verify", "SUCCESS"), ("Ssl-Client-Cert", "-----BEGIN"), ("X-Client-Cert", ":abc:"),
            ("X-Forwarded", "for=1.2.3.4"), ("X-Url-Scheme", "https"), ("Front-End-Https", "on"),
            ("X-Scheme", "https"), ("X-ARR-ClientCert", "MIIB"), ("X-Amzn-Mtls-Clientcert", "MIIB"),
            ("X-Forwarded-Ssl", "on")]
    for cert, path, bearer in CLIENTS:
        info = _forward(env, gw, cert, path, bearer, sent)
        for name, _v in sent:
            eq(seen(info, name), [], "%s: %s at the upstream" % (cert, name))
        check_identity(info, env.identity(cert, "device" if cert == "device" else "bootstrap"))


def _empty_name_refused(env, gw, cert, path, bearer, headers, method="GET", body=None):
    what = "%s %s %r" % (cert, method, headers)
    with env.connect(gw, ctx=env.client_context(cert)) as c:
        c.send(build_request(method, path, headers, body=body, bearer=env.bearer if bearer else None))
        resp = c.read_response(method)
        body_ = _refused(resp, "bad_header_name", what)
        eq(body_["message"], "a header line has an empty name", what + ": message")
        eq((resp.header("Connection") or "").lower(), "close", what + ": Connection")
        check(c.is_closed(), what + ": the connection stays open")


@test("header names: an empty header name (': evil') is refused: 400 bad_header_name, closed, nothing forwarded")
def _(env):
    gw = _gateway(env, "default")
    before = env.upstream_count()
    for cert, path, bearer in CLIENTS:
        for headers in ([("", "evil")], [("", "")], [("X-App", "1"), ("", "evil"), ("X-Other", "2")],
                        [("", "X-Device-Id: spoofed")]):
            _empty_name_refused(env, gw, cert, path, bearer, headers)
        _empty_name_refused(env, gw, cert, path, bearer, [("", "evil")], method="POST", body=b"hello")
    # first of all, before Host: the raw shape of the review
    with env.connect(gw) as c:
        c.send(b"GET /x HTTP/1.1\r\n: evil\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n"
               % env.bearer.encode())
        resp = c.read_response()
        _refused(resp, "bad_header_name", "empty name first")
        check(c.is_closed(), "empty name first: the connection stays open")
    eq(env.upstream_count(), before, "requests that reached the upstream")
    for mode in ("allow", "refuse"):
        _empty_name_refused(env, _gateway(env, mode), "device", "/hello", True, [("", "evil")])
    eq(env.upstream_count(), before, "requests that reached the upstream (allow, refuse)")


@test("header names: an upstream response with an empty header name is not relayed: 502 bad_gateway")
def _(env):
    gw = _gateway(env, "default")
    with env.connect(gw) as c:
        resp = c.request("GET", "/hello/emptyname")
        body = check_json_error(resp, 502, "empty name in the response")
        eq(body["error"], "bad_gateway", "error code")
        eq(body["message"], "the upstream sent an invalid response", "message")
        check(b"evil" not in resp.raw_head and b"evil" not in resp.body, "the upstream's line reached the client")
    with env.connect(gw) as c:
        info = upstream_info(c.request("GET", "/hello"), "after the 502")
        eq(info["path"], "/hello", "the next request is served")
