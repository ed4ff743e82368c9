"""Revocation across reloads (policy/mirror.c): the sync keeps every
well-formed entry, whatever its class, so a class a reload adds is revocable
from its first connection, by an entry already in the set or one written
after the reload through the admin API."""

import ssl

from certs import serial_of
from harness import check, eq, test
from loadgen import ReloadGateway
from testkit import RedisServer, redis_overrides
from tlsprobe import client_ctx, mint, verdict

REVOKED = "SSLV3_ALERT_CERTIFICATE_REVOKED"
V13 = ssl.TLSVersion.TLSv1_3


def _canon(serial):
    return serial.lower().lstrip("0") or "0"


@test("reload: a class the reload adds is revocable from its first connection (entry already in "
      "the set, and one written through the admin API after the reload)", timeout=60)
def _(env):
    redis = RedisServer(env, "rev12-redis").start()
    rg = None
    try:
        wrong = (env.pki("wrongca.crt"), env.pki("wrongca.key"))   # signed by other-ca
        partner2 = mint(env, "partner2", "v3_device", "5ea1e5", ca="other-ca")
        # written before the class exists: unusable now, but kept
        redis.write("partner:" + _canon(serial_of(wrong[0])))
        cfg = env.config(redis_overrides(redis.port))
        rg = ReloadGateway(env, "rev12", cfg)
        eq(verdict(env, rg, client_ctx(env, wrong, V13)), "TLSV1_ALERT_UNKNOWN_CA",
           "before the reload: other-ca is trusted by no class")
        eq(rg.health()["revocation"]["unusable_entries"], 1, "the partner entry counts as unusable")

        cfg2 = dict(cfg)
        cfg2["tls"] = dict(cfg["tls"], classes=cfg["tls"]["classes"] +
                           [{"name": "partner", "ca": env.pki("other-ca.crt")}])
        cfg2["routes"] = [dict(r, allow_classes=r["allow_classes"] + ["partner"]) for r in cfg["routes"]]
        doc = rg.reload_ok(cfg2, what="reload adding the partner class")
        eq(doc["changed"]["classes_changed"], ["partner"], "classes_changed")
        eq(verdict(env, rg, client_ctx(env, wrong, V13)), REVOKED,
           "the revoked partner certificate, on the first connection after the reload")
        eq(verdict(env, rg, client_ctx(env, partner2, V13)), "HTTP 200",
           "another partner certificate is served")

        status, body = rg.admin("POST", "/admin/revocations",
                                {"class": "partner", "serial": serial_of(partner2[0])})
        eq(status, 201, "admin revoke of a partner serial: %r" % (body,))
        ok = False
        for _ in range(20):
            if verdict(env, rg, client_ctx(env, partner2, V13)) == REVOKED:
                ok = True
                break
        check(ok, "the partner certificate revoked through the admin API is refused")
        eq(verdict(env, rg, client_ctx(env, "device", V13)), "HTTP 200", "device still served")
        check(_wait_unusable(rg, 0), "after the reload the partner entries count as usable: %r"
              % rg.health()["revocation"])
    finally:
        if rg:
            rg.stop()
        redis.stop()


def _wait_unusable(rg, n):
    import time
    for _ in range(40):
        if rg.health()["revocation"]["unusable_entries"] == n:
            return True
        time.sleep(0.1)
    return False
