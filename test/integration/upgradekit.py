"""Replacing a running gateway under load: the measurement behind
docs/operations.md (Binary upgrade) and the helpers of test_12_upgrade.py.

While build/portcullis-bench drives full handshakes and keep-alive requests
against gateway A, a gateway B is started on the same listeners and A is
retired; the bench's --json `errors` say how many connections were refused,
reset or failed. Two procedures:

  restart  B started plainly next to A (SO_REUSEPORT lets it), then SIGTERM
           to A: what an operator did before --upgrade existed. A gateway
           now refuses to start next to another, so this needs a binary from
           before (PORTCULLIS_BIN=/path/to/old/portcullis)
  upgrade  B started with --upgrade: it takes A's listening sockets, starts
           serving, and tells A to drain

Standalone (from the repository root; needs build/portcullis and
build/portcullis-bench):

    python3 test/integration/upgradekit.py [--rounds N] [--seconds S] [restart|upgrade ...]

prints one line per round and procedure with the error counts, and their sum.
Not a test module (the runner loads test_*.py only).
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BINARY, REPO, TIME_FACTOR, Env, Gateway, SetupError,  # noqa: E402
                     kill_group, spawn)

BENCH = os.path.abspath(os.environ.get("PORTCULLIS_BENCH_BIN",
                                       os.path.join(REPO, "build", "portcullis-bench")))


class Load:
    """One build/portcullis-bench run against port in the background."""

    def __init__(self, env, port, mode, conns, seconds, tag):
        self.out = os.path.join(env.tmp, "bench-%s-%s-%d.json" % (tag, mode, port))
        self.err = self.out + ".err"
        cmd = [BENCH, "--mode", mode, "-c", str(conns), "-t", "1", "-d", "%gs" % seconds,
               "--timeout", "10s", "--cert", env.pki("device.crt"), "--key", env.pki("device.key"),
               "--cacert", env.pki("server-ca.crt"), "-H", "Authorization: Bearer " + env.bearer,
               "--json", "https://127.0.0.1:%d/bench/%s" % (port, mode)]
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = spawn(cmd, stdout=o, stderr=e)
        self.mode = mode

    def result(self, timeout):
        """The bench's JSON report (waits for it to end)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc, 2, signal.SIGINT)
        with open(self.out) as f:
            text = f.read()
        try:
            return json.loads(text)
        except ValueError:
            with open(self.err) as f:
                raise SetupError("bench %s gave no report (exit %s): %s %s"
                                 % (self.mode, self.proc.returncode, text[-300:], f.read()[-300:]))

    def stop(self):
        kill_group(self.proc, 2, signal.SIGINT)


def failures(report):
    """The bench's errors that mean a client lost something: every kind but
    HTTP statuses (none are expected either, counted apart)."""
    e = report["errors"]
    return {k: v for k, v in e.items() if k != "http_status" and v}


def wait_log(gw, text, timeout):
    """Waits until gw's log has a line containing text; True if it came."""
    deadline = time.monotonic() + timeout * TIME_FACTOR
    while time.monotonic() < deadline:
        if any(text in ln for ln in gw.log_tail(100000)):
            return True
        if not gw.alive():
            return False
        time.sleep(0.05)
    return False


def start_b(env, name, cfg, upgrade):
    """Gateway B on A's listeners, with or without --upgrade: returns the
    Gateway once it logged that it is listening (its process exits on
    failure; the caller checks)."""
    gw = Gateway(env, name, cfg)
    log = open(gw.log_path, "ab")
    try:
        gw.proc = spawn([BINARY, "-c", gw.config_path] + (["--upgrade"] if upgrade else []),
                        cwd=env.tmp, stdout=log, stderr=log)
    finally:
        log.close()
    return gw


def handover(env, procedure, seconds=4.0, conns=8, tag="h"):
    """Starts A, drives load, replaces A by B by `procedure` ("restart" or
    "upgrade") a second into the load, and returns (reports, a, b): the
    bench reports by mode, and both gateways (A has exited; B still runs:
    the caller stops it)."""
    port = None
    cfg = env.config()
    port = int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])
    a = env.start_gateway("%s-a" % tag, cfg)
    loads = [Load(env, port, "full", conns, seconds, tag),
             Load(env, port, "keepalive", conns, seconds, tag)]
    b = None
    try:
        time.sleep(min(1.0, seconds / 4))
        b = start_b(env, "%s-b" % tag, cfg, procedure == "upgrade")
        if not wait_log(b, "listening on", 10):
            raise SetupError("gateway B did not start: %s" % b.log_tail(8, joined=True))
        if procedure == "restart":
            os.kill(a.pid, signal.SIGTERM)
        try:
            a.proc.wait(timeout=15 * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            raise SetupError("gateway A still runs after the handover: %s"
                             % a.log_tail(8, joined=True))
        a.expect_exit = True
        reports = {ld.mode: ld.result(seconds + 20 * TIME_FACTOR) for ld in loads}
    except BaseException:
        for ld in loads:
            ld.stop()
        a.stop(grace=2)
        if b is not None:
            b.stop(grace=2)
        raise
    return reports, a, b


def main(argv):
    rounds, seconds, procs = 3, 4.0, []
    it = iter(argv)
    for arg in it:
        if arg == "--rounds":
            rounds = int(next(it))
        elif arg == "--seconds":
            seconds = float(next(it))
        elif arg in ("restart", "upgrade"):
            procs.append(arg)
        else:
            sys.stderr.write(__doc__)
            return 2
    env = Env(verbose=False, keep=False)
    env.setup()
    total = {}
    try:
        for r in range(rounds):
            for p in procs or ["restart", "upgrade"]:
                reports, a, b = handover(env, p, seconds, tag="%s%d" % (p, r))
                b.stop(grace=10)
                line = []
                for mode, rep in sorted(reports.items()):
                    f = failures(rep)
                    n = sum(f.values())
                    total[p] = total.get(p, 0) + n
                    line.append("%s: %d requests, %d failed %s%s" % (
                        mode, rep["requests"], n, json.dumps(f),
                        (" " + json.dumps(rep.get("error_samples"))) if n else ""))
                print("round %d %-8s A exit %s; %s" % (r + 1, p, a.proc.returncode,
                                                       "; ".join(line)), flush=True)
    finally:
        env.close()
    for p, n in total.items():
        print("%s: %d failed connections or requests in %d rounds" % (p, n, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
