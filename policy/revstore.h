/* policy/revstore: writes and reads of the revocation set in Redis.
 *
 * Writers (the admin API and the CLI) change the set only this way:
 *   revoke: MULTI; SADD <key> <entry>; HSET <key>:meta <entry> <meta>;
 *           PUBLISH <channel> "+<entry>"; EXEC
 *   lift:   MULTI; SREM <key> <entry>; HDEL <key>:meta <entry>;
 *           PUBLISH <channel> "-<entry>"; EXEC
 * where <entry> is canonical (policy/revocation.h) and <meta> is the JSON
 * object {"reason": string or null, "revoked_at": unix seconds}.
 * Listing is SSCAN <key> <cursor> COUNT <n>, then HMGET <key>:meta for the
 * entries returned.
 * Revoking by device id revokes the device entry "device-id=<id>" (it
 * refuses every certificate carrying that device id, whenever signed) and,
 * with issuance configured, every live certificate issued to it, found in
 * the issuance records (docs/issuance.md):
 *   SMEMBERS portcullis:device:<id>                  serials issued to it
 *   MGET portcullis:issued:<serial> ...              which are still live
 *   MULTI; SADD, HSET, PUBLISH of the device entry, then of each entry
 *          "<issuance.device_class>:<serial>"; EXEC  one transaction
 * A serial whose issuance record has expired (or names another device) is
 * skipped: its certificate has expired too. Without issuance the
 * transaction holds the device entry only.
 *
 * The command construction and reply parsing below are shared by the
 * asynchronous store (for the event loop) and the synchronous CLI, so both
 * write exactly the same thing.
 *
 * pol_revstore_t runs on one event_base and is used only from its thread.
 * It connects on the first operation (AUTH with the password from
 * redis.password_env, SELECT redis.db), and again on the next operation
 * after the connection failed or was closed. It never blocks: every
 * operation ends in exactly one call of its callback, never from inside the
 * call that started it; ok=0 with a message when Redis refused, failed,
 * was unreachable, or did not answer within redis.connect_timeout +
 * redis.command_timeout (a command that timed out drops the connection).
 */
#ifndef PORTCULLIS_REVSTORE_H
#define PORTCULLIS_REVSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "../config/config.h"
#include "issued.h"
#include "revocation.h"

struct redisReply;

#define POL_REVSTORE_KEY_MAX 256      /* "<key>:meta" and "+<entry>" fit */
#define POL_REVSTORE_REASON_MAX 200   /* characters (UTF-8 code points) of a reason */
#define POL_REVSTORE_COUNT_MAX 1000   /* entries per list call */

/* ---------------------------------------------------------------- shared */

/* One Redis command as an argv array (pointers into the owner's storage). */
typedef struct {
    int argc;
    const char *argv[5];
    size_t argvlen[5];
} pol_revcmd_t;

/* The five commands of one revoke or lift, and the storage they point to. */
typedef struct {
    pol_revcmd_t cmd[5];    /* MULTI, SADD|SREM, HSET|HDEL, PUBLISH, EXEC */
    size_t ncmd;
    char entry[POL_REV_ENTRY_MAX];          /* canonical */
    char spelling[POL_REVSTORE_KEY_MAX];    /* lift: the entry as given, when not canonical */
    char metakey[POL_REVSTORE_KEY_MAX];
    char message[POL_REVSTORE_KEY_MAX];
    char *meta;             /* JSON for HSET; NULL for a lift */
} pol_revwrite_t;

/* Fills w for a revoke (add=1, reason may be NULL) or a lift (add=0) of an
 * entry in any spelling pol_rev_canon accepts, at time now (unix seconds).
 * A revoke writes the canonical entry; a lift removes the canonical entry
 * and, when it differs, the spelling given (SREM/HDEL of both), and
 * publishes the canonical one. 0, or -1 with *err set (entry refused by
 * pol_rev_canon, reason too long, out of memory). On 0, release w with
 * pol_revwrite_clear(). */
int pol_revwrite_build(pol_revwrite_t *w, const cfg_revocation_t *rc, int add,
                       const char *entry, const char *reason, int64_t now, const char **err);
void pol_revwrite_clear(pol_revwrite_t *w);

/* Checks the EXEC reply of a write: 0 with *changed = 1 if the set changed
 * (SADD/SREM answered 1), or -1 with a message in err. */
int pol_revwrite_result(const struct redisReply *exec, int *changed, char *err, size_t errlen);

typedef struct {
    char *entry;
    char *reason;           /* NULL if none was recorded */
    int64_t revoked_at;     /* unix seconds; 0 if unknown */
} pol_revstore_item_t;

typedef struct {
    int changed;                  /* add / remove: the set changed; device: entries newly added */
    pol_revstore_item_t *items;   /* list; device: the entries revoked (entry only), the
                                   * device entry first */
    size_t nitems;
    size_t certificates;          /* device: live certificates found in the issuance records */
    char cursor[24];              /* list: the next cursor; "0" when done */
} pol_revstore_result_t;

void pol_revstore_result_clear(pol_revstore_result_t *r);

/* Why a member of the set, as listed, cannot revoke anything on a gateway
 * with this configuration: 0 when it can (problem ""), or -1 with the
 * reason in problem (pol_rev_canon refuses it, or pol_rev_usable). */
int pol_revstore_entry_problem(const cfg_t *cfg, const char *member, char *problem,
                               size_t len);

/* 1 if s is a valid SSCAN cursor (decimal, at most 20 digits). */
int pol_revstore_valid_cursor(const char *s);

/* SSCAN <key> <cursor> COUNT <count> (count clamped to 1..1000); cmd
 * points at cursor and at countbuf, which receives the count's text.
 * 0, or -1 if the cursor is invalid. */
int pol_revscan_build(pol_revcmd_t *cmd, const cfg_revocation_t *rc, const char *cursor,
                      unsigned count, char countbuf[16]);
/* Parses an SSCAN reply into r (cursor and entries): 0, or -1 with err. */
int pol_revscan_result(const struct redisReply *scan, pol_revstore_result_t *r, char *err,
                       size_t errlen);
/* HMGET <key>:meta <entries of r>: argv/argvlen hold r->nitems + 2
 * elements, metakey POL_REVSTORE_KEY_MAX bytes. Returns argc. */
int pol_revmeta_build(const cfg_revocation_t *rc, const pol_revstore_result_t *r,
                      const char **argv, size_t *argvlen, char *metakey);
/* Applies an HMGET reply to r's items (reason, revoked_at): 0, or -1. */
int pol_revmeta_result(const struct redisReply *hmget, pol_revstore_result_t *r, char *err,
                       size_t errlen);
/* Parses one meta JSON value; *reason is malloc'd or NULL. 0, or -1. */
int pol_revmeta_parse(const char *json, size_t len, char **reason, int64_t *revoked_at);

/* A revoke of several canonical entries in one transaction: MULTI, then
 * the SADD, HSET and PUBLISH of each entry as pol_revwrite_build makes them,
 * then EXEC. */
typedef struct {
    pol_revwrite_t *w;            /* one per entry, in order */
    size_t n;
    pol_revcmd_t **cmd;           /* every command in sending order: 3 * n + 2 */
    size_t ncmd;
} pol_revbatch_t;

/* Fills b for a revoke of entries[0..n-1] (canonical, n >= 1), all with the
 * same reason (may be NULL) and time. 0, or -1 with *err set (as
 * pol_revwrite_build). On 0, release b with pol_revbatch_clear(). */
int pol_revbatch_build(pol_revbatch_t *b, const cfg_revocation_t *rc,
                       const char *const *entries, size_t n, const char *reason, int64_t now,
                       const char **err);
void pol_revbatch_clear(pol_revbatch_t *b);   /* also on a zeroed b */
/* Checks the EXEC reply of a batch of n entries: 0 with *nchanged the
 * number of entries newly added (and changed[i] 1 or 0 per entry when
 * changed is not NULL), or -1 with a message in err. */
int pol_revbatch_result(const struct redisReply *exec, size_t n, int *changed,
                        size_t *nchanged, char *err, size_t errlen);

/* Revoke by device id, step by step (the same for the async store and the
 * CLI). pol_revdevice_t points into itself: do not copy one. */
typedef struct {
    const cfg_t *cfg;
    char device_id[129];
    char device_entry[POL_REV_ENTRY_MAX];   /* "device-id=<id>" */
    char *reason;                 /* NULL if none */
    int64_t now;
    pol_argv_t members;           /* SMEMBERS portcullis:device:<id> */
    char **serials;               /* valid serials from SMEMBERS, sorted */
    size_t nserials;
    pol_argv_t *gets;             /* per serial: GET portcullis:issued:<serial> (for its key) */
    const char **mget_argv;       /* MGET <the gets' keys> */
    size_t *mget_argvlen;
    int mget_argc;                /* 0: the device has no serials */
    size_t ncerts;                /* live certificates in the batch */
    pol_revbatch_t batch;         /* the device entry, then the live certificates */
} pol_revdevice_t;

/* Starts a revoke of device_id. With issuance configured it fills
 * d->members (the SMEMBERS to send); without, the transaction is ready in
 * d->batch (batch.n > 0) and there is nothing to look up. 0, or -1 with
 * *err (the device id is not valid, the reason is too long or not UTF-8,
 * out of memory). On 0, release d with pol_revdevice_clear(). */
int pol_revdevice_begin(pol_revdevice_t *d, const cfg_t *cfg, const char *device_id,
                        const char *reason, int64_t now, const char **err);
/* Applies the SMEMBERS reply: 0 with the MGET in d->mget_*, or, when the
 * device has no serials (mget_argc 0), the transaction ready in d->batch;
 * -1 with err. */
int pol_revdevice_members(pol_revdevice_t *d, const struct redisReply *smembers, char *err,
                          size_t errlen);
/* Applies the MGET reply: 0 with the transaction in d->batch (the device
 * entry, then one entry per live certificate), or -1 with err. The batch's
 * EXEC reply is checked with pol_revbatch_result; the entries are
 * d->batch.w[i].entry. */
int pol_revdevice_records(pol_revdevice_t *d, const struct redisReply *mget, char *err,
                          size_t errlen);
void pol_revdevice_clear(pol_revdevice_t *d);   /* also on a zeroed d */

/* ---------------------------------------------------------------- async */

typedef struct pol_revstore pol_revstore_t;

/* ok: 1 on success; err: a message when ok == 0 (no secrets in it);
 * res: valid only during the call. */
typedef void (*pol_revstore_cb)(int ok, const char *err, const pol_revstore_result_t *res,
                                void *arg);

pol_revstore_t *pol_revstore_new(struct event_base *base, const cfg_t *cfg);
/* Drops pending operations without calling their callbacks. Not to be
 * called from inside a pol_revstore callback. */
void pol_revstore_free(pol_revstore_t *s);

/* The *err of every function here that ran out of memory (compare the
 * pointer: the caller answers 503 out_of_memory, not a 400). */
extern const char pol_revstore_oom[];

/* Each returns 0 when started (cb will be called once), or -1 with *err set
 * when the arguments are invalid or memory ran out (*err pol_revstore_oom;
 * cb is not called). */
int pol_revstore_add(pol_revstore_t *s, const char *entry, const char *reason,
                     pol_revstore_cb cb, void *arg, const char **err);
int pol_revstore_remove(pol_revstore_t *s, const char *entry, pol_revstore_cb cb, void *arg,
                        const char **err);
int pol_revstore_list(pol_revstore_t *s, const char *cursor, unsigned count,
                      pol_revstore_cb cb, void *arg, const char **err);
/* Revokes device_id and every live certificate issued to it (see the top).
 * On success res->items lists the entries revoked (the device entry first),
 * res->certificates how many live certificates were found, res->changed how
 * many entries were not revoked before. *err as pol_revdevice_begin. */
int pol_revstore_revoke_device(pol_revstore_t *s, const char *device_id, const char *reason,
                               pol_revstore_cb cb, void *arg, const char **err);

#endif
