"""Process lifecycle: --check, --version/--help, startup failures, SIGTERM drain."""

import os
import re
import signal
import subprocess
import time

from harness import (BINARY, SetupError, build_request, check, eq, fail, short,
                     test, to_yaml, upstream_info)


def _run(*args, timeout=10):
    if not os.access(BINARY, os.X_OK):
        raise SetupError("gateway binary %s not found (run make)" % BINARY)
    return subprocess.run([BINARY] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _write(env, name, text):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


@test("--check with a valid config: exit 0 and OK")
def _(env):
    path = _write(env, "check-valid.yaml", to_yaml(env.config()))
    r = _run("--check", "-c", path)
    eq(r.returncode, 0, "exit status (output: %s)" % short(r.stdout + r.stderr))
    check("OK" in r.stdout + r.stderr, "no OK printed: %s" % short(r.stdout + r.stderr))


@test("--check with an invalid config: exit 2 with file:line:col")
def _(env):
    text = to_yaml(env.config()).replace("max_headers: 100", "max_headers: lots")
    path = _write(env, "check-invalid.yaml", text)
    r = _run("--check", "-c", path)
    out = r.stdout + r.stderr
    eq(r.returncode, 2, "exit status (output: %s)" % short(out))
    check(re.search(re.escape(path) + r":\d+:\d+:", out),
          "no %s:line:col: message in output: %s" % (path, short(out, 400)))
    line_no = text.splitlines().index("  max_headers: lots") + 1
    check(re.search(re.escape(path) + r":%d:\d+:" % line_no, out),
          "error does not point at line %d: %s" % (line_no, short(out, 400)))


@test("--check reports every error, not only the first")
def _(env):
    cfg = env.config({"limits": {"max_headers": "lots"}, "timeouts": {"idle": "forever"}})
    cfg["no_such_key"] = 1
    path = _write(env, "check-multi.yaml", to_yaml(cfg))
    r = _run("--check", "-c", path)
    out = r.stdout + r.stderr
    eq(r.returncode, 2, "exit status")
    n = len(re.findall(re.escape(path) + r":\d+:\d+:", out))
    eq(n, 3, "errors reported (output: %s)" % short(out, 600))


@test("--check with a missing file: exit 2")
def _(env):
    r = _run("--check", "-c", os.path.join(env.tmp, "does-not-exist.yaml"))
    eq(r.returncode, 2, "exit status (output: %s)" % short(r.stdout + r.stderr))


@test("--version and --help exit 0")
def _(env):
    r = _run("--version")
    eq(r.returncode, 0, "--version exit status")
    check((r.stdout + r.stderr).strip(), "--version printed nothing")
    r = _run("--help")
    eq(r.returncode, 0, "--help exit status")
    check("-c" in r.stdout + r.stderr, "--help does not mention -c")


@test("gateway refuses to start with an invalid config")
def _(env):
    text = to_yaml(env.config()).replace("max_headers: 100", "max_headers: -5")
    path = _write(env, "start-invalid.yaml", text)
    r = _run("-c", path, timeout=10)
    check(r.returncode != 0, "gateway exited 0 with an invalid config")


@test("SIGTERM drains in-flight requests, refuses new ones, exits 0", timeout=40)
def _(env):
    gw = env.start_gateway("drain", env.config({"timeouts": {"drain": "5s"}}))
    try:
        c = env.connect(gw, timeout=8)
        with c:
            c.send(build_request("GET", "/slow?ms=1500", bearer=env.bearer))
            time.sleep(0.3)
            t_sig = time.monotonic()
            os.kill(gw.pid, signal.SIGTERM)
            time.sleep(0.3)
            # a new connection is refused: the listeners are closed
            try:
                env.connect(gw, "device", timeout=3).close()
                fail("a new connection after SIGTERM was accepted")
            except ConnectionRefusedError:
                pass
            # the in-flight request completes
            info = upstream_info(c.read_response(timeout=8), "in-flight request")
            eq(info["path"], "/slow?ms=1500", "in-flight path")
        try:
            rc = gw.proc.wait(timeout=7)
        except subprocess.TimeoutExpired:
            fail("gateway still running %.1fs after SIGTERM (drain 5s)" % (time.monotonic() - t_sig))
        eq(rc, 0, "exit status after SIGTERM")
    finally:
        gw.stop(grace=2)


@test("SIGTERM with no traffic exits 0 promptly")
def _(env):
    gw = env.start_gateway("idle-term", env.config())
    try:
        with env.connect(gw) as c:
            upstream_info(c.request("GET", "/before-term"))
        t0 = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        try:
            rc = gw.proc.wait(timeout=6)
        except subprocess.TimeoutExpired:
            fail("gateway still running 6s after SIGTERM")
        eq(rc, 0, "exit status")
        check(time.monotonic() - t0 < 3, "took %.1fs to exit with no in-flight requests"
              % (time.monotonic() - t0))
    finally:
        gw.stop(grace=2)


@test("memory is trimmed once connections stop arriving, not while they arrive")
def _(env):
    gw = env.start_gateway("trim", env.config({"logging": {"level": "debug"}}))
    try:
        def trims():
            return sum("heaps trimmed" in line for line in gw.log_tail(400))

        # a steady stream, one connection every 0.3 s for 2.5 s: no trim
        t_end = time.monotonic() + 2.5
        while time.monotonic() < t_end:
            with env.connect(gw) as c:
                upstream_info(c.request("GET", "/trim/steady"), "steady connection")
            time.sleep(0.3)
        eq(trims(), 0, "trims while connections kept arriving")
        # then quiet: the heaps are trimmed within two ticks, once
        time.sleep(2.5)
        eq(trims(), 1, "trims after connections stopped")
        time.sleep(1.5)
        eq(trims(), 1, "trims with no new connection since the last trim")
    finally:
        gw.stop()
