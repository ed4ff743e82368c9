/* config: load and strictly validate the YAML configuration.
 *
 * cfg_load() parses one YAML file into a cfg_t. Every problem found is
 * reported (not only the first) as "file:line:col: key.path: message" in the
 * cfg_errors_t list; on any error no cfg_t is returned, so a gateway never
 * starts (or reloads) half-configured. A cfg_t is immutable once loaded and
 * holds no global state: the caller owns it and frees it with cfg_free().
 *
 * Defaults live in one place: cfg_defaults() in config.c, and are listed in
 * docs/configuration.md.
 */
#ifndef PORTCULLIS_CONFIG_H
#define PORTCULLIS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "../base/dns.h"

#define CFG_MAX_NAME 64

typedef struct {
    char *file;   /* config file path, for error messages */
    char **msgs;  /* "file:line:col: key.path: message" */
    size_t n, cap;
} cfg_errors_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *text;   /* as written, e.g. "0.0.0.0:8443" or "[::1]:8443" */
    /* Where a DNS name may stand (upstream servers, redis.address, the http
     * verifier): host is the name, else NULL. A name is resolved at load
     * (config_resolver.c; one that does not resolve is a config error), addr
     * is then its first address, and dns its entry in the process's name
     * table (base/dns.h), whose current set is what connects use. */
    char *host;
    int port;
    char *where;                  /* key path, for the resolution error */
    unsigned long line, col;      /* its position in the file */
    struct pc_dns_name *dns;
} cfg_addr_t;

/* An IPv4 or IPv6 network, "10.0.0.0/8" or "fd00::/8" (a bare address is
 * the one host: /32 or /128). addr holds the network with its host bits
 * zero; an IPv4 network also matches IPv4-mapped IPv6 peers. */
typedef struct {
    int family;               /* AF_INET or AF_INET6 */
    uint8_t addr[16];         /* 4 or 16 bytes used */
    unsigned bits;            /* prefix length: 0..32 or 0..128 */
} cfg_cidr_t;

/* Which PROXY protocol header a listener reads before TLS: the values are
 * gateway/proxy_proto.h's GW_PP_V1, GW_PP_V2, GW_PP_ANY (0: off). */
enum cfg_proxy_protocol { CFG_PP_OFF = 0, CFG_PP_V1 = 1, CFG_PP_V2 = 2, CFG_PP_ANY = 3 };

/* One client listener (config_listen.c). proxy_protocol, trusted and the
 * proxy limits are per generation (reloadable); the address is the socket. */
typedef struct {
    cfg_addr_t addr;
    int proxy_protocol;           /* enum cfg_proxy_protocol */
    cfg_cidr_t *trusted;          /* trusted_from: peers allowed to send a header */
    size_t ntrusted;
    uint64_t proxy_timeout_ms;    /* the whole header must arrive within it (default 5s) */
    uint32_t proxy_header_max;    /* longest header taken, bytes (default 4096) */
} cfg_listener_t;

typedef struct {
    char *cert_file;  /* PEM chain, leaf first */
    char *key_file;
} cfg_cert_t;

typedef struct {
    char name[CFG_MAX_NAME];  /* e.g. "device", "bootstrap" */
    unsigned mx;              /* metrics label id, set by the runtime builder */
    char *ca_file;            /* PEM bundle of the CAs that anchor this class */
} cfg_class_t;

enum cfg_device_id_source { CFG_DEVID_SAN_URI = 0, CFG_DEVID_CN = 1 };

/* Indexes into cfg_identity_t.headers[] */
enum cfg_ident_hdr {
    CFG_H_SERIAL = 0,
    CFG_H_FINGERPRINT,
    CFG_H_SUBJECT,
    CFG_H_ISSUER,
    CFG_H_SAN_URI,
    CFG_H_SAN_DNS,
    CFG_H_NOT_AFTER,
    CFG_H_CLASS,
    CFG_H_DEVICE_ID,
    CFG_H_INTEGRITY,      /* the certificate's integrity level (docs/issuance.md) */
    CFG_H__COUNT
};

/* identity.integrity_policies (config_integrity.c): the certificatePolicies
 * OID that records each integrity level (enum cfg_integrity, below) in an
 * issued certificate. */
#define CFG_INTEGRITY_LEVELS 4      /* CFG_INT__COUNT */
#define CFG_OID_TEXT_MAX 128        /* dotted form, NUL included */
#define CFG_OID_DER_MAX 64          /* DER content octets of the OID */

typedef struct {
    char text[CFG_OID_TEXT_MAX];    /* "2.25.<uuid>.1": dotted decimal */
    unsigned char der[CFG_OID_DER_MAX];   /* its DER content octets (no tag, no length) */
    size_t der_len;                 /* 0: no OID (nothing matches it) */
} cfg_oid_t;

typedef struct {
    enum cfg_device_id_source device_id_source;
    char *device_id_prefix;            /* for san_uri: the URI prefix stripped */
    char *headers[CFG_H__COUNT];       /* header names, never NULL after load */
    cfg_oid_t integrity_oids[CFG_INTEGRITY_LEVELS];   /* per level, all distinct */
    uint32_t integrity_classes;        /* identity.integrity_classes: bitmask over
                                        * tls.classes indexes, the classes whose
                                        * certificates' levels are read; every
                                        * other class's are unattested */
    int integrity_classes_set;         /* 1: given in the file (else the default:
                                        * cfg_integrity_classes_default) */
} cfg_identity_t;

/* The defaults of identity.integrity_policies: 2.25.<UUID>.<level>, an arc
 * any UUID gives its maker without registration (ITU-T X.667). */
#define CFG_INTEGRITY_ARC "2.25.189217713610360413943209378316248556528"
/* Parses a dotted OID ("1.3.6.1.4.1.99999.1.2") strictly: at least two
 * arcs, the first 0..2, the second below 40 under 0 and 1, decimal arcs
 * without leading zeros (of any size), at most CFG_OID_TEXT_MAX - 1 characters, an
 * encoding of at most CFG_OID_DER_MAX octets. Pure, no allocation: 0 with
 * *out filled (text and DER content octets), or -1 with *why. */
int cfg_oid_parse(const char *s, cfg_oid_t *out, const char **why);

typedef struct {
    char name[CFG_MAX_NAME];
    unsigned mx;                    /* metrics label id, set by the runtime builder */
    cfg_addr_t *servers;
    size_t nservers;
    uint64_t connect_timeout_ms;
    uint64_t response_timeout_ms;
    uint64_t fail_timeout_ms;       /* how long a failed server is skipped */
    uint32_t keepalive;             /* idle pooled connections per worker and server */
    uint64_t keepalive_timeout_ms;  /* idle pooled connection lifetime */
} cfg_upstream_t;

/* Rate limits (config_policy.c). A limit allows `count` requests per
 * `period_ms` on average, and up to `burst` at once. */
enum cfg_rl_key { CFG_RL_DEVICE_ID = 0, CFG_RL_FINGERPRINT, CFG_RL_TOKEN, CFG_RL_IP,
                  CFG_RL_ROUTE };
enum cfg_rl_scope { CFG_RL_LOCAL = 0, CFG_RL_GLOBAL = 1 };

typedef struct {
    char name[CFG_MAX_NAME];
    unsigned mx;          /* metrics label id, set by the runtime builder */
    int key;              /* enum cfg_rl_key */
    uint64_t count;       /* n of "<n>/s|m|h" */
    uint64_t period_ms;   /* 1000, 60000 or 3600000 */
    uint64_t burst;       /* >= 1; default count */
    int scope;            /* enum cfg_rl_scope */
    int fail_closed;      /* global: 1 = 503 while Redis is unavailable, 0 = local limiter */
} cfg_rate_limit_t;

/* Most rate limits one route may list (any mix of local and global: the
 * gateway can wait for this many Redis answers per request). */
#define CFG_ROUTE_MAX_LIMITS 16

/* Connection-level limits, applied on accept before any TLS work. */
typedef struct {
    uint64_t per_ip_count;      /* new connections per period; 0 = unlimited */
    uint64_t per_ip_period_ms;  /* 1000 for "<n>/s" */
    uint64_t per_ip_burst;      /* default per_ip_count */
    uint32_t per_ip_concurrent; /* 0 = unlimited */
} cfg_connlimits_t;

/* JWT algorithms (bits of cfg_jwt_t.algorithms). */
#define CFG_JWT_ES256 1u
#define CFG_JWT_RS256 2u
#define CFG_JWT_EDDSA 4u
#define CFG_JWT_MAX_CLAIMS 16

typedef struct {
    char *claim;    /* top-level claim name, e.g. "sub" */
    char *header;   /* header it is injected as, e.g. "X-Token-Subject" */
} cfg_claim_header_t;

typedef struct {
    char *jwks_file;
    char *issuer;            /* NULL: not checked */
    char **audiences;        /* NULL/0: not checked; else one must be in "aud" */
    size_t naudiences;
    uint64_t leeway_ms;      /* exp/nbf tolerance; 30s */
    uint32_t algorithms;     /* CFG_JWT_* bits; all three by default */
    int bind_to_certificate; /* RFC 8705 cnf."x5t#S256" must match the client cert */
    cfg_claim_header_t *claims;  /* claims_to_headers; default {sub: X-Token-Subject} */
    size_t nclaims;              /* <= CFG_JWT_MAX_CLAIMS */
} cfg_jwt_t;

typedef struct {
    char name[CFG_MAX_NAME];  /* name: as given, else "<host><path>" cut to fit (metrics, logs) */
    unsigned mx;          /* metrics label id (base/metrics.h), set by the runtime builder */
    char *host;           /* NULL: any host; else canonical (config/host.h), no port */
    char *path;           /* prefix, starts with '/' */
    char **methods;       /* NULL/0: any method */
    size_t nmethods;
    char upstream_name[CFG_MAX_NAME];
    size_t upstream;      /* index into cfg_t.upstreams, resolved at load */
    uint32_t allow_classes;  /* bitmask over cfg_t.tls.classes indexes */
    int require_bearer;
    size_t *rate_limits;     /* indexes into cfg_t.rate_limits, in the order given */
    size_t nrate_limits;
    int rate_limit_headers;  /* 1: RateLimit headers on allowed responses too */
    cfg_jwt_t *jwt;          /* NULL: the bearer token is not validated as a JWT */
    int need_integrity;      /* 1: min_integrity set; a certificate below it is refused */
    int min_integrity;       /* with need_integrity: enum cfg_integrity */
} cfg_route_t;

enum cfg_tls_version { CFG_TLS12 = 0x0303, CFG_TLS13 = 0x0304 };

typedef struct {
    cfg_cert_t *certs;   /* one or more (e.g. one ECDSA and one RSA) */
    size_t ncerts;
    int min_version;     /* enum cfg_tls_version */
    char *ciphers;       /* TLS 1.2 cipher list (OpenSSL syntax) */
    char *ciphersuites;  /* TLS 1.3 suites */
    char *groups;        /* key exchange groups, e.g. "X25519:P-256" */
    uint64_t handshake_timeout_ms;
    uint32_t session_cache_size;     /* sessions kept for resumption */
    uint64_t session_lifetime_ms;    /* max age of a resumable session */
    uint32_t verify_cache_size;      /* verified chains remembered; 0: no cache */
    uint64_t verify_cache_lifetime_ms; /* max age of a remembered verification */
    cfg_class_t *classes;
    size_t nclasses;     /* 1..32 */
} cfg_tls_t;

typedef struct {
    uint32_t max_connections;     /* per process */
    uint32_t max_header_bytes;    /* request line + headers */
    uint32_t max_headers;         /* header count */
    uint64_t max_body_bytes;      /* request body; 0 = unlimited */
    uint64_t lingering_close_bytes; /* input dropped at most while lingering */
    uint64_t accept_backoff_ms;   /* accept failed for want of descriptors or memory (EMFILE,
                                   * ENFILE, ENOBUFS, ENOMEM): the worker stops accepting this
                                   * long; 100ms, 1ms..10s */
} cfg_limits_t;

typedef struct {
    uint64_t header_read_ms;  /* first byte of a request to end of its headers */
    uint64_t body_read_ms;    /* max gap between reads of a request body */
    uint64_t idle_ms;         /* keep-alive idle between requests */
    uint64_t send_ms;         /* max time a response write may stall */
    uint64_t drain_ms;        /* SIGTERM: in-flight requests get this long */
    uint64_t drain_idle_ms;   /* SIGTERM: an idle keep-alive connection waits this long for a
                               * request already on its way; 0: closed at once */
    uint64_t lingering_close_ms; /* closing with client input pending; 0: no lingering */
    uint64_t reload_grace_ms;  /* after a reload: idle connections of the old generation
                                * close after this; 0: at once */
} cfg_timeouts_t;

typedef struct {
    char *host;           /* "127.0.0.1", or a DNS name (as written, for logs) */
    int port;             /* 6379 */
    cfg_addr_t addr;      /* connect here: addr.dns set when host is a name */
    char *password_env;   /* env var holding the password; NULL = none */
    int db;
    uint64_t connect_timeout_ms;
    uint64_t command_timeout_ms;
} cfg_redis_t;

typedef struct {
    char *key;                    /* Redis set of canonical entries; "portcullis:revoked" */
    char *channel;                /* pub/sub channel; "portcullis:revocations" */
    uint64_t resync_interval_ms;  /* full re-sync period; 5m */
    int fail_closed;              /* on_redis_unavailable: 1 fail_closed (default), 0 serve_stale */
    uint64_t max_staleness_ms;    /* serve_stale: how long the last mirror may be used; 5m */
} cfg_revocation_t;

typedef struct {
    int enabled;                  /* 1 when an admin listener is configured */
    cfg_addr_t listen;            /* default 127.0.0.1:9444 */
    char *token_env;              /* env var with the admin bearer token; "PORTCULLIS_ADMIN_TOKEN" */
    uint32_t max_body_bytes;      /* 64k */
    int allow_remote;             /* 0: listen must be a loopback address (plain HTTP) */
} cfg_admin_t;

/* The metrics listener (section metrics, config/config_metrics.c): plain
 * HTTP serving /metrics, /healthz and /readyz. Restart-only. */
typedef struct {
    int enabled;                  /* 1 when the metrics section is present */
    cfg_addr_t address;           /* default 127.0.0.1:9445 */
    char *token_env;              /* NULL: /metrics needs no token; else the variable with it */
} cfg_metrics_t;

/* How request targets and header names are read (section http, config.c). */
enum cfg_underscores { CFG_US_DROP = 0, CFG_US_ALLOW, CFG_US_REFUSE };

typedef struct {
    int path_case_insensitive;    /* path_case: insensitive; routes match ignoring ASCII case */
    int path_merge_slashes;       /* path_empty_segments: merge; else "//" is refused */
    int path_ascii_only;          /* path_non_ascii: refuse; every escaped byte >= 0x80 refused */
    int underscores_in_headers;  /* enum cfg_underscores: names with '_' (drop) */
    char **forward_client_headers;  /* trust headers passed on as sent; none by default */
    size_t nforward_client_headers;
} cfg_http_t;

/* Request headers a client can use to claim what only a proxy in front may
 * say (its address, the URL, the method, its certificate). The gateway drops
 * them, and every X-Forwarded-* it does not set itself, unless
 * http.forward_client_headers names them. NULL-terminated. */
extern const char *const cfg_trust_headers[];
/* Prefixes of trust headers: every name longer than one of them that begins
 * with it (ASCII case-insensitive) is a trust header too. NULL-terminated. */
extern const char *const cfg_trust_prefixes[];
/* The gateway owns every header name under the certificate identity headers'
 * (serial .. class, not device_id) common prefix, cut after its last '-',
 * when that prefix has at least two non-empty segments (X-Client-Cert-, not
 * X-). Returns the prefix's length in id->headers[CFG_H_SERIAL], 0 for
 * none. Pure, no allocation. */
size_t cfg_identity_prefix(const cfg_identity_t *id);

enum cfg_log_level { CFG_LOG_ERROR = 0, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };
enum cfg_log_format { CFG_LOG_TEXT = 0, CFG_LOG_JSON };

typedef struct {
    int level;    /* enum cfg_log_level */
    int format;   /* enum cfg_log_format */
    int access;   /* 1: one access log line per request */
    uint64_t buffer;  /* bytes of each thread's log ring (base/log.h); restart-only */
    char *file;   /* log file (reopened on SIGUSR1); NULL: stderr */
} cfg_logging_t;

/* Running as a service (top-level user: and group:, config/config_service.c):
 * the identity the gateway drops to once its sockets and files are open.
 * Restart-only. Resolved when the file is loaded (an unknown name is an
 * error there). */
typedef struct {
    char *user;    /* NULL: no drop */
    char *group;   /* NULL: the user's primary group */
    uid_t uid;     /* of user, when set */
    gid_t gid;     /* of group, else the user's primary group */
} cfg_runas_t;

typedef struct {
    char *path;                  /* the file it was loaded from */
    int workers;                 /* resolved: "auto" -> number of cores */
    cfg_listener_t *listeners;
    size_t nlisteners;
    cfg_tls_t tls;
    cfg_identity_t identity;
    cfg_limits_t limits;
    cfg_http_t http;              /* parsed before routes; forward list after them */
    cfg_timeouts_t timeouts;
    cfg_upstream_t *upstreams;
    size_t nupstreams;
    cfg_route_t *routes;
    size_t nroutes;
    cfg_redis_t redis;
    cfg_revocation_t revocation;
    cfg_admin_t admin;
    cfg_logging_t logging;
    cfg_metrics_t metrics;
    cfg_rate_limit_t *rate_limits;
    size_t nrate_limits;
    cfg_connlimits_t connection_limits;
    pc_dns_conf_t resolver;       /* resolver section (config_resolver.c); restart-only */
    struct cfg_issuance *issuance;  /* NULL: no issuance section (disabled) */
    char *upgrade_socket;         /* binary upgrade handover (gateway/upgrade.h): an absolute
                                   * path, or "@name" for an abstract unix socket; never NULL
                                   * after load (default from listeners[0], cfg_upgrade_default) */
    cfg_runas_t runas;            /* user: / group: */
} cfg_t;

/* Most bytes of upgrade_socket's path or "@name" (sun_path less its NUL). */
#define CFG_UPGRADE_SOCKET_MAX 107
/* The default upgrade_socket of a gateway whose first listener is written
 * listener_text: "@portcullis-upgrade-<first 16 hex digits of SHA-256 of
 * the text>", into out (at least 40 bytes). Returns 0, or -1 if out is too
 * small or the digest fails. */
int cfg_upgrade_default(const char *listener_text, char *out, size_t outlen);

/* Boolean-like: returns the config, or NULL with errs filled (errs->n > 0). */
cfg_t *cfg_load(const char *path, cfg_errors_t *errs);
void cfg_free(cfg_t *cfg);
void cfg_errors_free(cfg_errors_t *errs);

/* Parsers for scalar values, shared with the CLI; return 0 on success, -1 on error. */
int cfg_parse_duration_ms(const char *s, uint64_t *out);   /* "500ms" "10s" "5m" "1h" "2d" */
int cfg_parse_size(const char *s, uint64_t *out);          /* "512" "16k" "10m" "1g" (binary units) */
int cfg_parse_addr(const char *s, int default_port, cfg_addr_t *out); /* "host:port", "[v6]:port" */
/* "a.b.c.d/n", "v6/n" or a bare address (a host); host bits must be zero.
 * Returns 0 with *out set, or -1 with *why saying what is wrong. Pure. */
int cfg_parse_cidr(const char *s, cfg_cidr_t *out, const char **why);
/* 1 if the address (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts
 * as IPv4) lies in one of the n networks, else 0. Pure. */
int cfg_cidr_match(const cfg_cidr_t *nets, size_t n, const struct sockaddr_storage *a);

/* Where to connect for a (an address where a name may stand): a itself for
 * an IP literal; for a name, address number turn (mod the set's size) of
 * its current set (base/dns.h), read through the caller's *cache (NULL at
 * first; the caller releases it with pc_dns_addrs_release). Writes the
 * address to *out and returns how many there are to try in turn (>= 1),
 * or 0 when a name has none yet (out untouched). Any thread
 * (config_resolver.c). */
size_t cfg_addr_pick(const cfg_addr_t *a, pc_dns_addrs_t **cache, size_t turn, pc_dns_sa_t *out);

/* Drops cfg's references to the names of its reloadable keys (upstream
 * servers, verifier URLs): the process keeps its start configuration for
 * the restart-only keys (redis.address keeps its name), and once that
 * generation is retired a name a reload removed must leave the name table
 * (no more re-resolving, no warnings about it). Those addresses then read
 * as their first answer. Call only when no thread uses them any more
 * (config_resolver.c). */
void cfg_release_reloadable_names(cfg_t *cfg);

/* The endpoints an upstream's servers make: 1 per IP literal, and
 * PC_DNS_MAX_ADDRS per name (a slot for each address it may have, each with
 * its own pool and health). The one count for the proxy's tables and the
 * descriptor need (config_resolver.c). */
size_t cfg_addr_endpoints(const cfg_addr_t *a);

/* Whether a connection made to *at (an address cfg_addr_pick gave for a)
 * should move: a is a name whose current set (read through *cache, as for
 * cfg_addr_pick) is not empty and no longer holds *at. For the clients that
 * keep one connection (Redis): they reconnect when the name moved even if
 * the old server stays up. Any thread (config_resolver.c). */
int cfg_addr_moved(const cfg_addr_t *a, pc_dns_addrs_t **cache, const pc_dns_sa_t *at);
size_t cfg_upstream_endpoints(const cfg_upstream_t *u);

/* Files the config names (certificates, keys, key material), read the same
 * way by cfg_load() and by the layers that load them again at the start, so
 * every "cannot read" says why (config_check.c).
 * cfg_open_file: a BIO on the regular file path, or NULL with
 *   msg = "cannot read \"<path>\": <strerror(errno) | not a regular file>".
 * cfg_read_file: the whole regular file (at most max bytes) in a NUL-terminated
 *   buffer the caller frees (cleansing it first if it is secret), with *len
 *   set; or NULL with msg as above (or "larger than <max> bytes").
 * cfg_ossl_reason: the reason of the thread's last OpenSSL error, never NULL. */
#define CFG_MAX_KEY_FILE 16384   /* largest Play Integrity key file, at load and at start */
struct bio_st *cfg_open_file(const char *path, char *msg, size_t len);
char *cfg_read_file(const char *path, size_t max, size_t *len, char *msg, size_t msglen);
const char *cfg_ossl_reason(void);


/* ---------------------------------------------------------------- issuance
 * Device-certificate issuance (config_issuance.c, docs/issuance.md). */

/* How strongly a device was attested (docs/issuance.md, "Integrity
 * levels"), in increasing order. A certificate that records no level is
 * "unattested" (-1), below none. */
enum cfg_integrity {
    CFG_INT_NONE = 0,     /* an allowed platform without any integrity API */
    CFG_INT_BASIC,        /* weaker verdicts (Play basic, App Attest development) */
    CFG_INT_DEVICE,       /* Play Integrity device verdict */
    CFG_INT_STRONG,       /* hardware key attestation, App Attest production */
    CFG_INT__COUNT
};
/* "none", "basic", "device", "strong"; "unattested" for -1 and any other value. */
const char *cfg_integrity_name(int level);
/* The default of identity.integrity_classes when the file sets none: the
 * issuance device class when there is an issuance section (whose device
 * class is known), else the class named "device" if there is one, else
 * none. Sets cfg->identity.integrity_classes; idempotent. */
void cfg_integrity_classes_default(cfg_t *cfg);
/* The level named s, or -1 for an unknown name. */
int cfg_integrity_parse(const char *s);

enum cfg_attest_provider {
    CFG_ATTEST_REFUSE = 0,        /* the platform is refused */
    CFG_ATTEST_PLAY_INTEGRITY,    /* Google Play Integrity, verified locally */
    CFG_ATTEST_HTTP,              /* an external verifier service */
    CFG_ATTEST_NONE,              /* no attestation; only with insecure_dev */
    CFG_ATTEST_ANDROID_KEY,       /* Android key attestation (hardware-attested key) */
    CFG_ATTEST_APP_ATTEST         /* Apple App Attest (config_attest_apple.c) */
};

/* Bits of cfg_play_integrity_t.device_verdicts */
#define CFG_PLAY_MEETS_BASIC    1u
#define CFG_PLAY_MEETS_DEVICE   2u
#define CFG_PLAY_MEETS_STRONG   4u
#define CFG_PLAY_MEETS_VIRTUAL  8u
#define CFG_PLAY_MAX_DIGESTS 16

typedef struct {
    char *package_name;
    char *decryption_key_file;    /* base64 AES-256 key from Play Console */
    char *verification_key_file;  /* base64 DER or PEM EC P-256 public key */
    unsigned char digests[CFG_PLAY_MAX_DIGESTS][32];  /* allowed app signing cert SHA-256 */
    size_t ndigests;              /* >= 1 */
    uint32_t device_verdicts;     /* CFG_PLAY_MEETS_* bits, all required */
    uint64_t max_age_ms;          /* 5m */
} cfg_play_integrity_t;

typedef struct {
    char *url;                    /* as written: "http://host:port/path" */
    char *host;                   /* host as written (for the Host header) */
    int port;
    char *path;                   /* starts with '/' */
    cfg_addr_t addr;              /* resolved address */
    uint64_t timeout_ms;          /* 3s */
    int max_level;                /* highest level its "level" may claim (device) */
} cfg_http_verifier_t;

/* provider android_key_attestation (config_attest_android.c) */
#define CFG_ANDROID_MAX_ROOTS 8
#define CFG_ANDROID_MAX_PACKAGES 16
typedef struct {
    char *name;                   /* an Android package name */
    unsigned char digests[CFG_PLAY_MAX_DIGESTS][32];  /* signing certificate SHA-256s */
    size_t ndigests;              /* >= 1 */
} cfg_android_package_t;

typedef struct {
    char *roots[CFG_ANDROID_MAX_ROOTS];   /* PEM files of the trusted attestation roots */
    size_t nroots;                /* >= 1 */
    cfg_android_package_t packages[CFG_ANDROID_MAX_PACKAGES];
    size_t npackages;             /* >= 1 */
    int min_level;                /* 1 TEE (default), 2 StrongBox; software never */
    int allow_unverified_boot;    /* 0: verifiedBootState must be Verified */
    char *revocation_status_file; /* NULL: none; Google's status JSON */
    int with_play;                /* require lists play_integrity: the platform's play
                                   * holds its settings and both must pass */
} cfg_android_key_t;

/* provider app_attest (config_attest_apple.c) */
enum cfg_app_attest_env {
    CFG_AA_PRODUCTION = 0,        /* only the production aaguid "appattest\0..." */
    CFG_AA_DEVELOPMENT,           /* only the development aaguid "appattestdevelop" */
    CFG_AA_ANY                    /* either */
};
#define CFG_AA_MAX_APP_IDS 32
#define CFG_AA_APP_ID_MAX 160     /* "TEAMID.bundle.id" */

typedef struct {
    char (*app_ids)[CFG_AA_APP_ID_MAX + 1];   /* TEAMID (10 [A-Z0-9]) "." bundle id */
    size_t napp_ids;              /* 1..CFG_AA_MAX_APP_IDS */
    char *root_ca_file;           /* PEM: the App Attest root CA(s) */
    int environment;              /* enum cfg_app_attest_env */
} cfg_app_attest_t;

typedef struct {
    char name[33];                /* [a-z0-9_]{1,32} */
    unsigned mx;                  /* metrics label id, set by the runtime builder */
    int provider;                 /* enum cfg_attest_provider */
    cfg_play_integrity_t play;    /* provider play_integrity */
    cfg_http_verifier_t http;     /* provider http */
    cfg_android_key_t android;    /* provider android_key_attestation */
    cfg_app_attest_t appattest;   /* provider app_attest */
} cfg_platform_t;

typedef struct cfg_issuance {
    char *path_prefix;            /* "/certificates/": <prefix>challenge, issue, renew */
    char *ca_cert_file;           /* signing CA, one of the device class's CAs */
    char *ca_key_file;
    char *chain_file;             /* NULL: no extra intermediates */
    char device_class[CFG_MAX_NAME];     /* "device" */
    char bootstrap_class[CFG_MAX_NAME];  /* "bootstrap" */
    size_t device_class_idx, bootstrap_class_idx;  /* into cfg_t.tls.classes */
    uint64_t lifetime_ms;         /* 7d; 1h..90d */
    uint64_t lifetime_by_integrity_ms[CFG_INTEGRITY_LEVELS];  /* per level; default lifetime_ms */
    uint64_t nonce_ttl_ms;        /* 2m; 10s..1h */
    int key_ec_p256;              /* 1 */
    int key_rsa;                  /* 0 */
    uint32_t rsa_min_bits;        /* 2048 */
    int renew_requires_attestation;  /* 0 */
    int revoke_old_on_renew;      /* 0 */
    uint64_t max_body_bytes;      /* 64k */
    int insecure_dev;             /* 0; 1 allows provider none */
    cfg_platform_t *platforms;
    size_t nplatforms;
} cfg_issuance_t;

/* Frees an issuance section (NULL is a no-op); called by cfg_free(). */
void cfg_issuance_free(cfg_issuance_t *is);
/* The platform named name, or NULL if the config does not list it. */
const cfg_platform_t *cfg_issuance_platform(const cfg_issuance_t *is, const char *name);

#endif
