/* policy/redis: one asynchronous Redis connection on one event loop, for
 * the decisions that need a round trip (global rate limits, issuance
 * nonces). Each worker owns one; it is used only from that worker's thread.
 *
 * It connects on the first command (AUTH with the password from
 * redis.password_env, SELECT redis.db) and again on the next command after
 * a failure. Every command ends in exactly one call of its callback, never
 * from inside pol_redis_command(): with the reply, or with an error when
 * Redis refused to connect, the connection was lost, or no answer came
 * within redis.connect_timeout + redis.command_timeout (the connection is
 * then dropped, so a late answer can never be taken for another's).
 * A caller that goes away first cancels its command: its callback is then
 * never called.
 */
#ifndef PORTCULLIS_POL_REDIS_H
#define PORTCULLIS_POL_REDIS_H

#include <event2/event.h>
#include <stddef.h>

#include "../config/config.h"

struct redisReply;
typedef struct pol_redis pol_redis_t;
typedef struct pol_redis_op pol_redis_op_t;

/* reply is NULL when err is set; both are valid only during the call. */
typedef void (*pol_redis_cb)(void *arg, const struct redisReply *reply, const char *err);

pol_redis_t *pol_redis_new(struct event_base *base, const cfg_redis_t *rc);
/* Pending commands are cancelled (no callbacks). */
void pol_redis_free(pol_redis_t *r);

/* Sends one command; returns a handle for pol_redis_cancel, or NULL when
 * out of memory (cb is then not called). */
pol_redis_op_t *pol_redis_command(pol_redis_t *r, int argc, const char *const *argv,
                                  const size_t *argvlen, pol_redis_cb cb, void *arg);
void pol_redis_cancel(pol_redis_op_t *op);

#endif
