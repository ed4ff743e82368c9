"""Listeners added and removed by a reload (gateway/runtime.c, worker.c): a
new address accepts at once, a removed one stops accepting while its
connections finish, and an address that cannot be bound refuses the whole
reload."""

import json
import socket

from harness import check, eq, free_port, test, to_yaml, wait_tcp
from testkit import admin_request

TOKEN = "admin-token-listeners-0123456789"


def _gateway(env, name, grace="30s"):
    admin = free_port()
    cfg = env.config({"admin": {"listen": "127.0.0.1:%d" % admin},
                      "timeouts": {"reload_grace": grace}})
    gw = env.start_gateway(name, cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    wait_tcp(admin, gw.proc, 10, "admin listener")
    return gw, cfg, admin


def _reload(gw, admin, cfg):
    with open(gw.config_path, "w") as f:
        f.write(to_yaml(cfg))
    status, body = admin_request(admin, TOKEN, "POST", "/admin/reload")
    return status, body if isinstance(body, dict) else json.loads(body)


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@test("reload: a listener added accepts at once, a removed one refuses new connections "
      "while its open connection keeps working")
def listeners_live(env):
    gw, cfg, admin = _gateway(env, "reload-listeners")
    try:
        first = cfg["listeners"][0]["address"]
        second_port = free_port()
        second = "127.0.0.1:%d" % second_port
        held = env.connect(gw)
        eq(held.request("GET", "/held").status, 200, "a connection on the first listener")

        both = dict(cfg, listeners=[{"address": first}, {"address": second}])
        status, body = _reload(gw, admin, both)
        eq(status, 200, "reload adding a listener")
        eq(body["changed"]["listeners_added"], [second], "listeners_added")
        eq(body["changed"]["listeners_removed"], [], "listeners_removed")
        eq(env.connect(second_port).request("GET", "/new").status, 200, "the new listener serves")

        only_second = dict(cfg, listeners=[{"address": second}])
        status, body = _reload(gw, admin, only_second)
        eq(status, 200, "reload removing the first listener")
        eq(body["changed"]["listeners_removed"], [first], "listeners_removed")
        check(_refused(gw.port), "the removed listener %s still accepts" % first)
        eq(held.request("GET", "/still").status, 200,
           "the connection accepted on the removed listener keeps working")
        eq(env.connect(second_port).request("GET", "/after").status, 200, "the kept listener serves")
        held.close()
    finally:
        gw.stop()


@test("reload: a new listener address that cannot be bound refuses the whole reload")
def listener_busy(env):
    gw, cfg, admin = _gateway(env, "reload-listener-busy")
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = "127.0.0.1:%d" % busy.getsockname()[1]
        routes = [r for r in cfg["routes"] if r["path"] != "/"]   # if applied, /x would be 404
        status, body = _reload(gw, admin, dict(cfg, routes=routes,
                                               listeners=cfg["listeners"] + [{"address": taken}]))
        eq(status, 422, "reload with a busy address")
        eq(body["error"], "reload_failed", "error code")
        eq(body["generation"], 1, "generation kept")
        why = ("listen on %s: another process is already listening there (a second gateway?); "
               "to replace a running gateway without dropping connections, start the new one "
               "with --upgrade" % taken)
        check(any(e.endswith(why) for e in body["errors"]),
              "the error names the address and why: %r" % body["errors"])
        st, health = admin_request(admin, TOKEN, "GET", "/admin/health")
        eq(health["runtime"]["generation"], 1, "health: still generation 1")
        eq(health["runtime"]["reload_failures"], 1, "health: one failed reload")
        eq(env.connect(gw).request("GET", "/x").status, 200,
           "the old routes serve: nothing of the refused file applied")
        check(any("reload: refused, generation 1 keeps serving" in line for line in gw.log_tail(50)),
              "the refusal is logged")
    finally:
        busy.close()
        gw.stop()


@test("reload: asked through the admin API while the gateway drains: 503 shutting_down, nothing reloaded")
def reload_during_drain(env):
    import os
    import signal
    import time
    admin = free_port()
    cfg = env.config({"admin": {"listen": "127.0.0.1:%d" % admin},
                      "timeouts": {"drain": "5s", "drain_idle": "10m"}})
    gw = env.start_gateway("reload-drain", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": TOKEN})
    try:
        wait_tcp(admin, gw.proc, 10, "admin listener")
        with env.connect(gw) as held:   # keeps the drain going
            eq(held.request("GET", "/x").status, 200, "a connection to keep the drain going")
            os.kill(gw.proc.pid, signal.SIGTERM)
            time.sleep(0.5)
            status, body = admin_request(admin, TOKEN, "POST", "/admin/reload")
            eq((status, body["error"]), (503, "shutting_down"), "reload during the drain")
    finally:
        gw.stop()
