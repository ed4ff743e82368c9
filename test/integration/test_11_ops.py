"""Operations (issue 11): --check runs what the start runs, the admin listener
stays on loopback, --help is complete, key-file errors say why, and the test
tool writes its private keys 0600."""

import os
import re
import stat
import subprocess

from harness import BINARY, REPO, check, eq, fail, free_port, spawn, kill_group, test, to_yaml
from testkit import example_config, start_run_sh, tree_copy

MINT = os.path.join(REPO, "build", "mint-integrity")
NO_TOKEN = "PORTCULLIS_TEST_11_NO_TOKEN"


def _write(env, name, cfg):
    path = os.path.join(env.tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    return path


def _environ(**extra):
    e = {k: v for k, v in os.environ.items() if k != NO_TOKEN}
    e.update(extra)
    return e


def _check(path, environ):
    """portcullis --check -c path: (exit status, stdout, stderr)."""
    r = subprocess.run([BINARY, "--check", "-c", path], capture_output=True, text=True,
                       env=environ, timeout=60)
    return r.returncode, r.stdout, r.stderr


def _start(path, environ):
    """Starts the gateway and waits for it to exit: (exit status, output)."""
    proc = spawn([BINARY, "-c", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 env=environ)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        kill_group(proc, 1)
        fail("the gateway kept running")
    return proc.returncode, out.decode("utf-8", "replace")


def _admin_cfg(env, **admin):
    cfg = env.config()
    cfg["admin"] = dict({"listen": "127.0.0.1:%d" % free_port(), "token_env": NO_TOKEN}, **admin)
    return cfg


@test("ops: --check fails (exit 2) when the admin token variable is unset, with the start's message")
def _(env):
    path = _write(env, "ops-notoken", _admin_cfg(env))
    want = ("%s: admin.token_env: the environment variable %s is unset or empty; "
            "set it to the admin bearer token" % (path, NO_TOKEN))
    for label, environ in (("unset", _environ()), ("empty", _environ(**{NO_TOKEN: ""}))):
        rc, out, err = _check(path, environ)
        eq(rc, 2, "--check exit status, variable %s" % label)
        eq(out, "", "--check stdout, variable %s" % label)
        check(want in err.splitlines(), "--check, variable %s: %r lacks %r" % (label, err, want))
    # the start fails the same way, with the same line and status
    rc, out = _start(path, _environ())
    eq(rc, 2, "start exit status without the token")
    check(want in out.splitlines(), "start output %r lacks %r" % (out[-400:], want))
    rc, out, err = _check(path, _environ(**{NO_TOKEN: "t0ken"}))
    eq((rc, out, err), (0, "OK\n", ""), "--check with the variable set")


@test("ops: issuance key-file errors name the file and say why (directory, not a key, missing)")
def _(env):
    d = os.path.join(env.tmp, "ops-keys2")
    os.makedirs(d, exist_ok=True)
    cases = [
        ("ca_key", d, r'cannot read "%s": not a regular file' % re.escape(d)),
        ("ca_key", env.pki("device-ca.crt"),
         r'"%s" is not an unencrypted PEM private key: \S' % re.escape(env.pki("device-ca.crt"))),
        ("ca_cert", os.path.join(d, "gone.crt"),
         r'cannot read "%s": No such file or directory' % re.escape(os.path.join(d, "gone.crt"))),
    ]
    for key, value, why in cases:
        cfg = env.config()
        cfg["issuance"] = {"ca_cert": env.pki("device-ca.crt"), "ca_key": env.pki("device-ca.key"),
                           "platforms": {"feature_phone": {"provider": "refuse"}}}
        cfg["issuance"][key] = value
        path = _write(env, "ops-key-%s" % key, cfg)
        rc, out, err = _check(path, _environ())
        eq(rc, 2, "--check exit status, issuance.%s = %s" % (key, value))
        check(re.search(r"^%s:\d+:\d+: issuance\.%s: %s" % (re.escape(path), key, why), err, re.M),
              "issuance.%s = %s: %r does not match %r" % (key, value, err, why))


@test("ops: admin.listen on a non-loopback address fails --check unless admin.allow_remote is true")
def _(env):
    port = free_port()
    for listen in ("0.0.0.0:%d" % port, "[::]:%d" % port):
        path = _write(env, "ops-remote", _admin_cfg(env, listen=listen))
        rc, out, err = _check(path, _environ(**{NO_TOKEN: "t0ken"}))
        eq(rc, 2, "--check exit status for %s" % listen)
        check(re.search(r"^%s:\d+:\d+: admin\.listen: %s is not a loopback address, .*hint: .*"
                        r"admin\.allow_remote: true" % (re.escape(path), re.escape(listen)), err, re.M),
              "no file:line:col error with a hint for %s: %r" % (listen, err))
    path = _write(env, "ops-remote-ok", _admin_cfg(env, listen="0.0.0.0:%d" % port,
                                                   allow_remote=True))
    eq(_check(path, _environ(**{NO_TOKEN: "t0ken"})), (0, "OK\n", ""), "allow_remote: true")
    path = _write(env, "ops-loopback", _admin_cfg(env, listen="127.0.0.2:%d" % port))
    eq(_check(path, _environ(**{NO_TOKEN: "t0ken"})), (0, "OK\n", ""), "127.0.0.2")


def _long_options(source):
    with open(os.path.join(REPO, source)) as f:
        return set(re.findall(r'\{"([a-z][a-z-]+)", (?:required|no)_argument', f.read()))


@test("ops: --help lists every command form, every option and the signals, and the README's commands")
def _(env):
    r = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
    eq(r.returncode, 0, "--help exit status")
    text = r.stdout
    for form in ("portcullis -c FILE", "portcullis --check -c FILE",
                 "portcullis revoke -c FILE (--class C --serial S | --fingerprint F) [--reason R]",
                 "portcullis revoke -c FILE --device-id ID [--reason R]",
                 "portcullis unrevoke -c FILE (--class C --serial S | --fingerprint F | --device-id ID)",
                 "portcullis revocations -c FILE [--cursor N] [--count 1..1000]",
                 "portcullis --version"):
        check(form in text, "--help lacks %r" % form)
    for sig in ("SIGTERM", "SIGINT", "SIGHUP"):
        check(re.search(r"^\s+(SIG[A-Z]+, )*%s\b" % sig, text, re.M), "--help lacks %s" % sig)
    for opt in _long_options("gateway/main.c") | _long_options("gateway/cli.c"):
        check("--" + opt in text or (opt == "config" and "-c FILE" in text),
              "--help lacks the option --%s" % opt)
    # every command the README shows is one --help lists, with options --help lists
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    shown = re.findall(r"^build/portcullis (\S+)(.*)$", readme, re.M)
    check(len(shown) >= 5, "README shows %d portcullis commands" % len(shown))
    for first, rest in shown:
        if not first.startswith("-"):
            check("portcullis %s -c FILE" % first in text, "README's %r not in --help" % first)
        for opt in re.findall(r"(--[a-z-]+)", first + rest.split("#")[0]):
            check(opt in text, "README uses %s, --help does not list it" % opt)
    check("--device-id" in readme and "SIGHUP" in readme, "README lacks --device-id or SIGHUP")


@test("ops: mint-integrity --gen-keys writes the private keys 0600 whatever the umask, never over a file")
def _(env):
    if not os.access(MINT, os.X_OK):
        fail("%s not built" % MINT)
    d = os.path.join(env.tmp, "ops-mint")
    os.makedirs(d)
    old = os.umask(0)
    try:
        r = subprocess.run([MINT, "--gen-keys", d], capture_output=True, text=True, timeout=30)
    finally:
        os.umask(old)
    eq(r.returncode, 0, "--gen-keys exit status (%s)" % r.stderr)
    modes = {n: stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode)
             for n in ("decryption.key", "signing.pem", "verification.key")}
    eq(modes, {"decryption.key": 0o600, "signing.pem": 0o600, "verification.key": 0o644},
       "file modes")
    with open(os.path.join(d, "signing.pem")) as f:
        before = f.read()
    r = subprocess.run([MINT, "--gen-keys", d], capture_output=True, text=True, timeout=30)
    eq(r.returncode, 1, "--gen-keys into a directory that has keys")
    check("File exists" in r.stderr, "no reason given: %r" % r.stderr)
    with open(os.path.join(d, "signing.pem")) as f:
        eq(f.read(), before, "signing.pem after the refused second run")


def _port_open(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@test("ops: scripts/run.sh prints the configured listener, and SIGTERM to it stops the gateway, "
      "the upstream and redis", timeout=300)
def _(env):
    import signal
    root = os.path.join(env.tmp, "ops-run")
    os.makedirs(root)
    tree_copy(root)
    gw_port, up_port, redis_port = free_port(), free_port(), free_port()
    example_config(os.path.join(root, "run-test.yaml"), gw_port, up_port, redis_port)
    proc, text = start_run_sh(root, "run-test.yaml", up_port, redis_port)
    try:
        want = "portcullis is listening on https://127.0.0.1:%d (run-test.yaml)" % gw_port
        check(want in text, "banner lacks %r: %s" % (want, text[-1500:]))
        check("https://localhost:%d/api/hello" % gw_port in text, "curl lines use another port")
        check(":8443" not in text, "the banner still mentions 8443: %s" % text[-1500:])
        for port, what in ((gw_port, "gateway"), (up_port, "upstream"), (redis_port, "redis")):
            check(_port_open(port), "%s not listening on %d" % (what, port))
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "--cacert", "run/pki/server-ca.crt", "--cert", "run/pki/device.crt",
                            "--key", "run/pki/device.key", "https://localhost:%d/api/hello" % gw_port],
                           cwd=root, capture_output=True, text=True, timeout=20)
        eq(r.stdout, "401", "curl without a token, as the banner says")
        os.kill(proc.pid, signal.SIGTERM)   # the script only, not its process group
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("run.sh still running 60s after SIGTERM")
        eq(rc, 143, "run.sh exit status after SIGTERM")
        for port, what in ((gw_port, "gateway"), (up_port, "upstream"), (redis_port, "redis")):
            check(not _port_open(port), "%s still listening on %d after SIGTERM" % (what, port))
        # nothing of the session still runs (an exited process not yet reaped is not running)
        left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(proc.pid)],
                              capture_output=True, text=True).stdout.splitlines()
        eq([p for p in left if p.split()[1][0] != "Z"], [], "processes left in run.sh's session")
        with open(os.path.join(root, "run", "gateway.log"), errors="replace") as f:
            log = f.read()
        check("SIGTERM: draining" in log and "stopped" in log, "gateway did not drain: %s" % log[-800:])
    finally:
        if proc.poll() is None:
            kill_group(proc, 5)


@test("ops: the README's dependency list and the Dockerfile's build packages match scripts/deps.sh")
def _(env):
    with open(os.path.join(REPO, "scripts", "deps.sh")) as f:
        m = re.search(r"^pkgs=\(([^)]*)\)", f.read(), re.M)
    check(m, "scripts/deps.sh has no pkgs=(...) list")
    deps = m.group(1).split()
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    m = re.search(r"^## Building by hand\n(.*?)(^## |\Z)", readme, re.M | re.S)
    check(m, "README has no 'Building by hand' section")
    listed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", " ".join(re.findall(r"`([^`]*)`", m.group(1)))))
    eq(sorted(p for p in deps if p not in listed), [], "deps.sh packages the README does not list")
    with open(os.path.join(REPO, "Dockerfile")) as f:
        stages = re.split(r"^FROM ", f.read().replace("\\\n", " "), flags=re.M)
    m = re.search(r"apt-get install ([^&]*)", stages[1])   # the build stage
    docker = [p for p in m.group(1).split() if not p.startswith("-")]
    eq(sorted(p for p in docker if p not in deps), [], "Dockerfile build packages not in deps.sh")
