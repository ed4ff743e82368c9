"""Issue 11, the route gate: no rate limit is ever skipped. A limit keyed on
device_id counts a certificate without a device id (the bootstrap
certificate) per certificate fingerprint, so bootstrap issuance traffic is
limited too (one bucket: every install shares the bootstrap certificate)."""

from harness import check, eq, free_port, test, wait_tcp
from testkit import admin_request, issuing_gateway, post_json, redis_cli, redis_keys

DB = 13            # a Redis database of its own: nonce and limit keys are counted exactly


def _redis(env, *args):
    return redis_cli(env.redis_port, *args, db=DB)


def _keys(env, pattern):
    return redis_keys(env.redis_port, pattern, db=DB)


def _gateway(env, name, limit):
    return issuing_gateway(env, name, DB, [
        {"path": "/certificates/", "upstream": "echo", "allow_classes": ["bootstrap", "device"],
         "require_bearer": False, "rate_limits": [limit["name"]]},
        {"path": "/", "upstream": "echo", "allow_classes": ["device"], "require_bearer": True}],
        [limit])


def _challenges(env, gw, cert, n):
    """n POST /certificates/challenge with cert, over two connections (both
    workers serve some). The statuses, in order."""
    codes = []
    for part in (n // 2, n - n // 2):
        with env.connect(gw, cert) as c:
            for _ in range(part):
                r = post_json(c, "/certificates/challenge")
                codes.append(r.status)
                if r.status == 429:
                    eq(r.json().get("error"), "rate_limited", "%s: error code of a limited challenge" % cert)
                    check((r.header("Retry-After") or "").isdigit(), "%s: Retry-After on a 429" % cert)
                else:
                    eq(r.status, 200, "%s: an allowed challenge" % cert)
                    eq(len(r.json().get("nonce", "")), 43, "%s: a nonce was returned" % cert)
    return codes


def _device_id_run(env, scope):
    limit = {"name": "chal_dev", "key": "device_id", "rate": "1/m", "burst": 1}
    if scope == "global":
        limit.update({"scope": "global", "on_redis_unavailable": "fail_closed"})
    gw = _gateway(env, "gate2-devid-" + scope, limit)
    try:
        before = env.upstream_count()
        codes = _challenges(env, gw, "bootstrap", 10)
        eq(codes, [200] + [429] * 9, "%s device_id limit, bootstrap certificate: one challenge, then 429" % scope)
        eq(len(_keys(env, "portcullis:nonce:*")), 1, "%s: exactly one nonce in Redis" % scope)
        # the enrolled devices each have a bucket of their own, apart from
        # the bootstrap certificate's
        for n, cert in enumerate(("device", "device2"), start=2):
            eq(_challenges(env, gw, cert, 3), [200, 429, 429], "%s: %s counts by its own device id" % (scope, cert))
            eq(len(_keys(env, "portcullis:nonce:*")), n, "%s: nonces in Redis after %s" % (scope, cert))
        if scope == "global":
            eq(len(_keys(env, "portcullis:rl:chal_dev:*")), 3,
               "global: three buckets in Redis (the bootstrap certificate, device, device2)")
        eq(env.upstream_count(), before, "%s: nothing reached the upstream" % scope)
    finally:
        gw.stop()


@test("gate: a local device_id limit counts the bootstrap certificate (per fingerprint): 429 after the burst")
def _(env):
    _device_id_run(env, "local")


@test("gate: a global device_id limit counts the bootstrap certificate (per fingerprint): 429 after the burst")
def _(env):
    _device_id_run(env, "global")


ADMIN_TOKEN = "admin-token-0123456789abcdef"
FP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _admin(port, method, body):
    return admin_request(port, ADMIN_TOKEN, method, "/admin/revocations", body)


@test("admin: each refusal of a revocation body has its exact status and code; nothing is written")
def _(env):
    port = free_port()
    cfg = env.config({"redis": {"db": DB}, "admin": {"listen": "127.0.0.1:%d" % port}})
    _redis(env, "FLUSHDB")
    gw = env.start_gateway("gate2-admin", cfg, environ={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        wait_tcp(port, gw.proc, 10, "admin listener")
        cases = [
            ("POST", b"", "invalid_json", "needs a JSON body"),
            ("POST", b"[1]", "invalid_json", "must be a JSON object"),
            ("POST", b"{", "invalid_json", "malformed JSON"),
            ("POST", b'{"fingerprint": "%s", "fingerprint": "%s"}' % (FP.encode(), FP.encode()),
             "invalid_json", "malformed JSON"),
            ("POST", {"fingerprint": FP, "colour": 1}, "invalid_request", 'unknown field "colour"'),
            # an unknown field is reported before anything else
            ("POST", {"reason": 5, "colour": 1}, "invalid_request", 'unknown field "colour"'),
            ("POST", {"fingerprint": FP, "reason": 5}, "invalid_reason", "at most 200"),
            ("POST", {"device_id": "abc", "serial": "12"}, "invalid_request", "device_id alone"),
            ("POST", {"device_id": "a b"}, "invalid_device_id", "1..128"),
            ("POST", {"fingerprint": FP, "class": "device"}, "invalid_request", "not both"),
            ("POST", {"fingerprint": 5}, "invalid_entry", "fingerprint must be a string"),
            ("POST", {"fingerprint": "12"}, "invalid_entry", "64 hex"),
            ("POST", {"class": "device"}, "missing_field", "give class and serial"),
            ("POST", {"class": "device", "serial": 12}, "invalid_entry", "must be strings"),
            ("POST", {"class": "device", "serial": "12g"}, "invalid_entry", "hexadecimal"),
            ("POST", {"class": "devcie", "serial": "12"}, "unknown_class", "not configured"),
            ("DELETE", {"colour": 1}, "invalid_request", 'unknown field "colour"'),
        ]
        for method, body, code, words in cases:
            status, doc = _admin(port, method, body)
            what = "%s %r" % (method, body)
            eq((status, doc.get("error")), (400, code), what)
            check(words in doc.get("message", ""), "%s: message %r lacks %r" % (what, doc.get("message"), words))
        eq(_redis(env, "DBSIZE").strip(), "0", "no refused request wrote to Redis")
        # the class check is for writes: an entry of an unknown class may still be lifted
        status, doc = _admin(port, "DELETE", {"class": "devcie", "serial": "12"})
        eq((status, doc), (200, {'entry': 'devcie:12', 'revoked': False}), "DELETE of an unconfigured class's entry is not refused")
    finally:
        gw.stop()
