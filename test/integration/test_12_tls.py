"""TLS sessions kept by the process-level store (tls/store.c) instead of
libssl's per-context cache: tls.session_cache.size 0 disables resumption for
both TLS versions (libssl's own cache read 0 as "unlimited", so TLS 1.2
session IDs were still resumed), and a session made on one connection
resumes with the same identity after many others went through the store."""

import ssl

from harness import H_SERIAL, check, eq, test, upstream_headers, upstream_info

_VERSIONS = [(ssl.TLSVersion.TLSv1_3, "TLS 1.3"), (ssl.TLSVersion.TLSv1_2, "TLS 1.2")]


@test("tls.session_cache.size 0: no session resumes, TLS 1.3 or TLS 1.2; every request served")
def _(env):
    gw = env.start_gateway("sessions-off", env.config({"tls": {"session_cache": {"size": 0}}}))
    try:
        for ver, label in _VERSIONS:
            ctx = env.client_context("device", max_version=ver, min_version=ver)
            with env.connect(gw, ctx=ctx) as c:
                upstream_info(c.request("GET", "/off/1"), "%s: first connection" % label)
                session = c.session
            for i in range(2):
                with env.connect(gw, ctx=ctx, session=session) as c:
                    upstream_info(c.request("GET", "/off/%d" % (i + 2)),
                                  "%s: connection %d" % (label, i + 2))
                    check(not c.session_reused,
                          "%s: a session was resumed with tls.session_cache.size 0" % label)
                    session = c.session or session
    finally:
        gw.stop()


@test("sessions: the store keeps a session through 40 other full handshakes and resumes it "
      "with the same identity (TLS 1.3 and TLS 1.2)")
def _(env):
    gw = env.gateway("main")
    for ver, label in _VERSIONS:
        ctx = env.client_context("device", max_version=ver, min_version=ver)
        with env.connect(gw, ctx=ctx) as c:
            first = upstream_info(c.request("GET", "/keep/0"), "%s: first connection" % label)
            session = c.session
        other = env.client_context("device", max_version=ver, min_version=ver)
        for i in range(40):
            with env.connect(gw, ctx=other) as c:
                upstream_info(c.request("GET", "/keep/other/%d" % i), "%s: other %d" % (label, i))
        with env.connect(gw, ctx=ctx, session=session) as c:
            info = upstream_info(c.request("GET", "/keep/1"), "%s: resumed connection" % label)
            check(c.session_reused, "%s: the first session was not resumed" % label)
        eq(upstream_headers(info, H_SERIAL), upstream_headers(first, H_SERIAL),
           "%s: serial after resumption" % label)
