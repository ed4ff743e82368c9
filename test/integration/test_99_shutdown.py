"""Runs last: every shared gateway still running exits cleanly on SIGTERM."""

from harness import check, test


@test("shutdown: every shared gateway exits 0 on SIGTERM, no sanitizer reports", timeout=60)
def _(env):
    problems = []
    for name, gw in list(env.gateways.items()):
        rc = gw.stop(grace=10)
        del env.gateways[name]
        if rc != 0:
            problems.append("%s exited with status %s (log: %s)"
                            % (name, rc, gw.log_tail(5, joined=True)))
    for gw in env.all_gateways:
        reports = gw.sanitizer_reports()
        if reports:
            problems.append("sanitizer report in %s: %s" % (gw.name, " | ".join(reports[:3])))
    check(not problems, "; ".join(problems))
