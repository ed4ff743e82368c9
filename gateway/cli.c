/* gateway/cli: revoke / unrevoke / revocations subcommands (see cli.h);
 * verify-attestation is cli_attest.c's. */
#include "cli.h"
#include "cli_attest.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "../config/config.h"
#include "../policy/revocation.h"
#include "../policy/revstore.h"
#include "../tls/tls.h"

enum { CMD_REVOKE, CMD_UNREVOKE, CMD_LIST };

typedef struct {
    int cmd;
    const char *name;
    const char *config, *cls, *serial, *fingerprint, *device_id, *reason, *cursor, *count;
} opts_t;

/* The synopsis of every subcommand, in the order --help lists them. */
static const struct { const char *cmd, *args; } synopsis[] = {
    {"revoke", "-c FILE (--class C --serial S | --fingerprint F) [--reason R]"},
    {"revoke", "-c FILE --device-id ID [--reason R]"},
    {"unrevoke", "-c FILE (--class C --serial S | --fingerprint F | --device-id ID)"},
    {"revocations", "-c FILE [--cursor N] [--count 1..1000]"},
    {"verify-attestation", "-c FILE --platform NAME --at RFC3339 [--nonce NONCE]\n"
                           "           [--key-id B64] [--csr FILE] [--client-data-hash B64] TOKEN_FILE"},
};

void gw_cli_synopsis(FILE *f, const char *only, int first)
{
    for (size_t i = 0; i < sizeof synopsis / sizeof synopsis[0]; i++) {
        if (only && strcmp(only, synopsis[i].cmd) != 0)
            continue;
        fprintf(f, "%s portcullis %s %s\n", first ? "usage:" : "      ", synopsis[i].cmd,
                synopsis[i].args);
        first = 0;
    }
}

void gw_cli_exit_status(FILE *f)
{
    fprintf(f, "Exit status (revoke, unrevoke, revocations): 0 done, 1 Redis error,\n"
               "2 usage or validation error (also a class that is not in tls.classes:\n"
               "such an entry could revoke nothing). See docs/revocation.md.\n"
               "Exit status (verify-attestation): 0 accepted, 1 refused, 2 usage or\n"
               "configuration error. See docs/issuance.md.\n");
}

static void usage(FILE *f, const char *name)
{
    gw_cli_synopsis(f, name && gw_cli_is_command(name) ? name : NULL, 1);
    gw_cli_exit_status(f);
}

int gw_cli_is_command(const char *cmd)
{
    return cmd && (!strcmp(cmd, "revoke") || !strcmp(cmd, "unrevoke") ||
                   !strcmp(cmd, "revocations") || !strcmp(cmd, "verify-attestation"));
}

/* 0, or 2 after printing the problem. */
static int parse_args(opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"class", required_argument, NULL, 'C'},
        {"serial", required_argument, NULL, 'S'},
        {"fingerprint", required_argument, NULL, 'F'},
        {"device-id", required_argument, NULL, 'D'},
        {"reason", required_argument, NULL, 'R'},
        {"cursor", required_argument, NULL, 'u'},
        {"count", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 0;   /* glibc: re-initialise, the caller may have used getopt */
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 'C': o->cls = optarg; break;
        case 'S': o->serial = optarg; break;
        case 'F': o->fingerprint = optarg; break;
        case 'D': o->device_id = optarg; break;
        case 'R': o->reason = optarg; break;
        case 'u': o->cursor = optarg; break;
        case 'n': o->count = optarg; break;
        case 'h': usage(stdout, o->name); return 1;
        default: usage(stderr, o->name); return 2;
        }
    }
    const char *bad = NULL;
    if (optind < argc)
        bad = "unexpected argument";
    else if (!o->config)
        bad = "-c FILE is required";
    else if (o->cmd == CMD_LIST && (o->cls || o->serial || o->fingerprint || o->device_id ||
                                    o->reason))
        bad = "revocations takes only -c, --cursor and --count";
    else if (o->cmd != CMD_LIST && (o->cursor || o->count))
        bad = "--cursor and --count are for revocations";
    else if (o->device_id && (o->cls || o->serial || o->fingerprint))
        bad = "give --device-id alone, not with --class, --serial or --fingerprint";
    else if (o->cmd == CMD_UNREVOKE && o->device_id && o->reason)
        bad = "--reason is only for revoke";
    else if (o->device_id)
        bad = NULL;   /* revoke --device-id [--reason], unrevoke --device-id: complete */
    else if (o->cmd != CMD_LIST && o->fingerprint && (o->cls || o->serial))
        bad = "give either --class and --serial, or --fingerprint";
    else if (o->cmd != CMD_LIST && !o->fingerprint && (!o->cls || !o->serial))
        bad = "give --class and --serial, or --fingerprint";
    else if (o->cmd == CMD_UNREVOKE && o->reason)
        bad = "--reason is only for revoke";
    if (bad) {
        fprintf(stderr, "portcullis %s: %s%s%s\n", o->name, bad, optind < argc ? ": " : "",
                optind < argc ? argv[optind] : "");
        usage(stderr, o->name);
        return 2;
    }
    return 0;
}

static cfg_t *load(const char *path)
{
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        if (errs.n == 0)
            fprintf(stderr, "%s: could not be loaded\n", path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* Runs one command, printing a message on failure; the reply or NULL. */
static redisReply *command(redisContext *c, const cfg_redis_t *r, const char *what, int argc,
                           const char **argv, const size_t *argvlen)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, argvlen);
    if (!rep) {
        fprintf(stderr, "Redis %s:%d: %s failed: %s\n", r->host, r->port, what,
                c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "Redis %s:%d: %s failed: %s\n", r->host, r->port, what, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* Connects, authenticates and selects the database; NULL after printing. */
static redisContext *connect_redis(const cfg_redis_t *r)
{
    /* every address the configuration's load resolved redis.address to, in
     * turn, each an IP literal (hiredis would resolve a name itself) */
    pc_dns_addrs_t *cache = NULL;
    redisContext *c = NULL;
    pc_dns_sa_t sa;
    char ip[64];
    for (size_t turn = 0, n = 1; turn < n && (!c || c->err); turn++) {
        if (!(n = cfg_addr_pick(&r->addr, &cache, turn, &sa)))
            break;
        redisFree(c);
        int port = pc_dns_sa_ip(&sa, ip, sizeof ip);
        c = redisConnectWithTimeout(ip, port, ms_tv(r->connect_timeout_ms));
    }
    pc_dns_addrs_release(cache);
    if (!c || c->err) {
        fprintf(stderr, "cannot connect to Redis %s:%d: %s\n", r->host, r->port,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_tv(r->command_timeout_ms)) != REDIS_OK) {
        fprintf(stderr, "Redis %s:%d: cannot set the command timeout\n", r->host, r->port);
        redisFree(c);
        return NULL;
    }
    const char *pw = r->password_env ? getenv(r->password_env) : NULL;
    if (pw && *pw) {
        const char *argv[2] = {"AUTH", pw};
        size_t argvlen[2] = {4, strlen(pw)};
        redisReply *rep = command(c, r, "AUTH", 2, argv, argvlen);
        if (!rep) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    if (r->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[2] = {"SELECT", db};
        size_t argvlen[2] = {6, strlen(db)};
        redisReply *rep = command(c, r, "SELECT", 2, argv, argvlen);
        if (!rep) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    return c;
}

/* Sends a MULTI ... EXEC transaction (cmd[0..n-1], pipelined) and returns
 * the EXEC reply (freeReplyObject), or NULL after printing the failure. */
static redisReply *transaction(redisContext *c, const cfg_redis_t *r, pol_revcmd_t *const *cmd,
                               size_t n)
{
    redisReply *exec = NULL;
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++)
        if (redisAppendCommandArgv(c, cmd[i]->argc, cmd[i]->argv, cmd[i]->argvlen) != REDIS_OK) {
            fprintf(stderr, "Redis %s:%d: cannot send %s: %s\n", r->host, r->port,
                    cmd[i]->argv[0], c->errstr[0] ? c->errstr : "out of memory");
            failed = 1;
        }
    for (size_t i = 0; i < n && !failed; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep) {
            fprintf(stderr, "Redis %s:%d: %s failed: %s\n", r->host, r->port, cmd[i]->argv[0],
                    c->errstr[0] ? c->errstr : "no reply");
            failed = 1;
        } else if (i + 1 < n && rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "Redis %s:%d: %s failed: %s\n", r->host, r->port, cmd[i]->argv[0],
                    rep->str);
            failed = 1;
        } else if (i + 1 == n) {
            exec = rep;
            rep = NULL;
        }
        freeReplyObject(rep);
    }
    return exec;
}

static int do_write(const opts_t *o, const cfg_t *cfg)
{
    char entry[POL_REV_ENTRY_MAX];
    const char *err = NULL;
    int add = o->cmd == CMD_REVOKE;
    char why[300];
    if (o->device_id ? pol_rev_canon_device(o->device_id, entry, sizeof entry, &err)
        : o->fingerprint ? pol_rev_canon_fingerprint(o->fingerprint, entry, sizeof entry, &err)
                         : pol_rev_canon_serial(o->cls, o->serial, entry, sizeof entry, &err)) {
        fprintf(stderr, "portcullis %s: %s\n", o->name, err);
        return 2;
    }
    /* a revocation that can match no certificate is refused, not written */
    if (add && !o->device_id && !o->fingerprint &&
        pol_rev_usable(cfg, entry, POL_REV_SERIAL, why, sizeof why) < 0) {
        fprintf(stderr, "portcullis %s: %s\n", o->name, why);
        return 2;
    }
    char note[512];
    if (add && !o->device_id && !o->fingerprint &&
        tls_ca_serial_note(cfg, entry, note, sizeof note))
        fprintf(stderr, "portcullis %s: warning: %s\n", o->name, note);
    pol_revwrite_t w;
    if (pol_revwrite_build(&w, &cfg->revocation, add, entry, o->reason, (int64_t)time(NULL),
                           &err) < 0) {
        fprintf(stderr, "portcullis %s: %s\n", o->name, err);
        return 2;
    }
    const cfg_redis_t *r = &cfg->redis;
    redisContext *c = connect_redis(r);
    if (!c) {
        pol_revwrite_clear(&w);
        return 1;
    }
    pol_revcmd_t *cmd[5];
    for (size_t i = 0; i < w.ncmd; i++)
        cmd[i] = &w.cmd[i];
    redisReply *exec = transaction(c, r, cmd, w.ncmd);
    char msg[300];
    int changed = 0, rc = 1;
    if (exec && pol_revwrite_result(exec, &changed, msg, sizeof msg) < 0) {
        fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
    } else if (exec) {
        rc = 0;
        if (add)
            printf(changed ? "revoked %s\n" : "%s was already revoked\n", w.entry);
        else
            printf(changed ? "lifted the revocation of %s\n" : "%s was not revoked\n", w.entry);
    }
    freeReplyObject(exec);
    redisFree(c);
    pol_revwrite_clear(&w);
    return rc;
}

/* revoke --device-id: the same steps as the admin API (policy/revstore.h). */
static int do_device(const opts_t *o, const cfg_t *cfg)
{
    pol_revdevice_t d;
    const char *err = NULL;
    if (pol_revdevice_begin(&d, cfg, o->device_id, o->reason, (int64_t)time(NULL), &err) < 0) {
        fprintf(stderr, "portcullis %s: %s\n", o->name, err);
        return 2;
    }
    const cfg_redis_t *r = &cfg->redis;
    redisContext *c = connect_redis(r);
    if (!c) {
        pol_revdevice_clear(&d);
        return 1;
    }
    char msg[300];
    int rc = d.batch.n > 0 ? 0 : 1;   /* without issuance the batch is ready */
    redisReply *rep = NULL;
    if (rc != 0) {
        rep = command(c, r, "SMEMBERS", d.members.argc, d.members.argv, d.members.argvlen);
        if (rep && pol_revdevice_members(&d, rep, msg, sizeof msg) < 0) {
            fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
        } else if (rep && d.mget_argc > 0) {
            freeReplyObject(rep);
            rep = command(c, r, "MGET", d.mget_argc, d.mget_argv, d.mget_argvlen);
            if (rep && pol_revdevice_records(&d, rep, msg, sizeof msg) < 0)
                fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
            else if (rep)
                rc = 0;
        } else if (rep) {
            rc = 0;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (rc == 0) {
        int *changed = calloc(d.batch.n, sizeof *changed);
        size_t nchanged = 0;
        rc = 1;
        if (!changed) {
            fprintf(stderr, "out of memory\n");
        } else if ((rep = transaction(c, r, d.batch.cmd, d.batch.ncmd)) &&
                   pol_revbatch_result(rep, d.batch.n, changed, &nchanged, msg, sizeof msg) < 0) {
            fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
        } else if (rep) {
            rc = 0;
            for (size_t i = 0; i < d.batch.n; i++)
                printf(changed[i] ? "revoked %s\n" : "%s was already revoked\n",
                       d.batch.w[i].entry);
            printf("device %s: revoked by id, %zu live certificate(s), %zu entries newly "
                   "revoked\n", d.device_id, d.ncerts, nchanged);
        }
        freeReplyObject(rep);
        free(changed);
    }
    redisFree(c);
    pol_revdevice_clear(&d);
    return rc;
}

static int do_list(const opts_t *o, const cfg_t *cfg)
{
    const char *cursor = o->cursor ? o->cursor : "0";
    unsigned long count = 100;
    if (o->count) {
        char *end = NULL;
        count = strtoul(o->count, &end, 10);
        if (o->count[0] < '0' || o->count[0] > '9' || *end || count < 1 ||
            count > POL_REVSTORE_COUNT_MAX) {
            fprintf(stderr, "portcullis revocations: --count must be an integer 1..1000\n");
            return 2;
        }
    }
    pol_revcmd_t scan;
    char countbuf[16];
    if (pol_revscan_build(&scan, &cfg->revocation, cursor, (unsigned)count, countbuf) < 0) {
        fprintf(stderr, "portcullis revocations: --cursor must be a decimal number\n");
        return 2;
    }
    const cfg_redis_t *r = &cfg->redis;
    redisContext *c = connect_redis(r);
    if (!c)
        return 1;
    pol_revstore_result_t res;
    char msg[300];
    int rc = 1;
    memset(&res, 0, sizeof res);
    redisReply *rep = command(c, r, "SSCAN", scan.argc, scan.argv, scan.argvlen);
    if (rep && pol_revscan_result(rep, &res, msg, sizeof msg) < 0)
        fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
    else if (rep)
        rc = 0;
    freeReplyObject(rep);
    if (rc == 0 && res.nitems > 0) {
        const char **argv = calloc(res.nitems + 2, sizeof *argv);
        size_t *argvlen = calloc(res.nitems + 2, sizeof *argvlen);
        char metakey[POL_REVSTORE_KEY_MAX];
        rc = 1;
        if (argv && argvlen) {
            int argc = pol_revmeta_build(&cfg->revocation, &res, argv, argvlen, metakey);
            rep = command(c, r, "HMGET", argc, argv, argvlen);
            if (rep && pol_revmeta_result(rep, &res, msg, sizeof msg) < 0)
                fprintf(stderr, "Redis %s:%d: %s\n", r->host, r->port, msg);
            else if (rep)
                rc = 0;
            freeReplyObject(rep);
        } else {
            fprintf(stderr, "out of memory\n");
        }
        free(argv);
        free(argvlen);
    }
    if (rc == 0) {
        for (size_t i = 0; i < res.nitems; i++) {
            char when[40] = "-";
            time_t t = (time_t)res.items[i].revoked_at;
            struct tm tm;
            if (t > 0 && gmtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            char problem[300];
            int bad = pol_revstore_entry_problem(cfg, res.items[i].entry, problem,
                                                 sizeof problem) < 0;
            printf("%s\t%s\t%s%s%s\n", res.items[i].entry, when,
                   res.items[i].reason ? res.items[i].reason : "-", bad ? "\tUNUSABLE: " : "",
                   bad ? problem : "");
        }
        printf("next cursor: %s\n", res.cursor);
    }
    pol_revstore_result_clear(&res);
    redisFree(c);
    return rc;
}

int gw_cli_main(const char *cmd, int argc, char **argv)
{
    if (cmd && !strcmp(cmd, "verify-attestation"))
        return gw_attest_cli_main(argc, argv);
    opts_t o;
    memset(&o, 0, sizeof o);
    o.name = cmd;
    if (cmd && !strcmp(cmd, "revoke"))
        o.cmd = CMD_REVOKE;
    else if (!strcmp(cmd, "unrevoke"))
        o.cmd = CMD_UNREVOKE;
    else if (!strcmp(cmd, "revocations"))
        o.cmd = CMD_LIST;
    else {
        fprintf(stderr, "portcullis: unknown subcommand \"%s\"\n", cmd ? cmd : "");
        usage(stderr, NULL);
        return 2;
    }
    int rc = parse_args(&o, argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    cfg_t *cfg = load(o.config);
    if (!cfg)
        return 2;
    rc = o.cmd == CMD_LIST                          ? do_list(&o, cfg)
         : o.device_id && o.cmd == CMD_REVOKE ? do_device(&o, cfg)
                                              : do_write(&o, cfg);
    cfg_free(cfg);
    return rc;
}
