"""What a reload reports (gateway/runtime.c gw_changes_compute): routes whose
settings changed, classes removed, and one error per restart-only key."""

import json

from harness import eq, free_port, test, to_yaml, wait_tcp
from testkit import admin_request

TOKEN = "admin-token-report-0123456789ab"


def _reload(gw, admin, cfg):
    with open(gw.config_path, "w") as f:
        f.write(to_yaml(cfg))
    status, body = admin_request(admin, TOKEN, "POST", "/admin/reload")
    return status, body if isinstance(body, dict) else json.loads(body)


@test("reload report: a route with other settings, a class removed, each restart-only key named")
def report(env):
    admin = free_port()
    cfg = env.config({"admin": {"listen": "127.0.0.1:%d" % admin}})
    gw = env.start_gateway("reload-report", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    try:
        wait_tcp(admin, gw.proc, 10, "admin listener")
        routes = [dict(r, require_bearer=False) if r["path"] == "/" else r for r in cfg["routes"]]
        status, body = _reload(gw, admin, dict(cfg, routes=routes))
        eq(status, 200, "reload with require_bearer flipped")
        eq((body["changed"]["routes_added"], body["changed"]["routes_removed"],
            body["changed"]["routes_changed"]), ([], [], ["*/ *"]), "a route with other settings")

        tls = dict(cfg["tls"], classes=[c for c in cfg["tls"]["classes"] if c["name"] != "bootstrap"])
        only_device = [dict(r, allow_classes=["device"]) for r in routes]
        status, body = _reload(gw, admin, dict(cfg, tls=tls, routes=only_device))
        eq(status, 200, "reload without the bootstrap class")
        eq(body["changed"]["classes_changed"], ["bootstrap"], "a removed class is a changed class")
        eq(body["changed"]["routes_changed"], ["*/certificates/ *"], "its route lost a class")

        redis = dict(cfg["redis"], connect_timeout="2s")
        status, body = _reload(gw, admin, dict(cfg, tls=tls, routes=only_device, redis=redis,
                                               revocation={"resync_interval": "1m"}))
        eq(status, 422, "restart-only keys changed")
        tail = "this key needs a restart (the reload was refused)"
        eq(body["errors"], ["%s: redis.connect_timeout: changed; %s" % (gw.config_path, tail),
                            "%s: revocation.resync_interval: changed; %s" % (gw.config_path, tail)],
           "one error per key, each named")
        eq(body["generation"], 3, "nothing applied")
    finally:
        gw.stop()
