#!/usr/bin/python3
"""Run the portcullis integration tests.

Usage: run.py [-v] [--keep] [--list] [FILTER ...]

FILTERs are substrings of test names; with none, every test runs. Each test
prints "ok - NAME" or "not ok - NAME: REASON"; the last line is
"N passed, N failed[, N skipped]". Exit status 1 if any test failed.

Environment: PORTCULLIS_BIN (default build/portcullis),
PORTCULLIS_TEST_WORKERS (workers in gateway configs, default 2),
PORTCULLIS_TEST_SANITIZED=1 (sanitizer build: longer time limits, logs
scanned for sanitizer reports).
"""

import argparse
import glob
import importlib
import os
import signal
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit")


def load_tests():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "test_*.py"))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    return harness.TESTS


def reason_of(exc):
    if isinstance(exc, (harness.TestFailure, harness.SetupError, TestTimeout)):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print tracebacks and gateway log tails for failures")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, PKI)")
    ap.add_argument("--list", action="store_true", help="list test names and exit")
    ap.add_argument("filters", nargs="*")
    args = ap.parse_args()

    tests = load_tests()
    if args.filters:
        tests = [t for t in tests if any(f in t.name for f in args.filters)]
    if args.list:
        for t in tests:
            print(t.name)
        return 0

    passed = failed = skipped = 0
    env = harness.Env(verbose=args.verbose, keep=args.keep)

    def on_term(signum, frame):
        env.close()
        sys.exit(130)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        try:
            signal.alarm(180)
            env.setup()
            signal.alarm(0)
        except Exception as e:  # noqa: BLE001
            signal.alarm(0)
            print("not ok - setup: %s" % reason_of(e), flush=True)
            env.close()
            print("0 passed, 1 failed", flush=True)
            return 1
        if args.keep:
            print("# temp dir: %s" % env.tmp, flush=True)

        for t in tests:
            status, why = "ok", ""
            try:
                signal.alarm(t.timeout * harness.TIME_FACTOR)
                try:
                    t.fn(env)
                finally:
                    signal.alarm(0)
            except harness.Skip as e:
                status, why = "skip", str(e)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001
                status, why = "fail", reason_of(e)
                if args.verbose:
                    for line in traceback.format_exc().rstrip().splitlines():
                        print("#   " + line)
            problems = env.check_gateways()
            if problems and status != "fail":
                status, why = "fail", "; ".join(problems)
            elif problems:
                why += " [also: %s]" % "; ".join(problems)
            why = why.replace("\n", " ")
            if status == "ok":
                passed += 1
                print("ok - %s" % t.name, flush=True)
            elif status == "skip":
                skipped += 1
                print("ok - %s # SKIP %s" % (t.name, why), flush=True)
            else:
                failed += 1
                print("not ok - %s: %s" % (t.name, why), flush=True)
                if args.verbose:
                    for gw in env.gateways.values():
                        for line in gw.log_tail(6):
                            print("#   [%s] %s" % (gw.name, line))
    finally:
        signal.alarm(0)
        env.close()

    summary = "%d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    print(summary, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
