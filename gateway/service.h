/* gateway/service: what running as a service needs of the process: the
 * descriptor limit, the drop to user:/group:, and systemd's readiness
 * notifications (sd_notify over $NOTIFY_SOCKET, natively). Main thread. */
#ifndef PORTCULLIS_SERVICE_H
#define PORTCULLIS_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

/* The descriptors cfg may need at once: limits.max_connections x 2 (the
 * client's and its upstream connection), the idle upstream pools of every
 * worker, the Redis clients, the listening sockets of every worker, and a
 * margin for the log, admin, metrics, upgrade socket, event loops and the
 * files read on a reload. */
uint64_t gw_service_fd_need(const cfg_t *cfg);

/* Raises the soft RLIMIT_NOFILE to gw_service_fd_need(cfg), at most to the
 * hard limit (never lowers it); logs at INFO what it raised, at WARN with
 * the numbers when the need is out of reach. when: "start" or "reload". */
void gw_service_raise_nofile(const cfg_t *cfg, const char *when);

/* accept(2) failing with errno e: the portcullis_accept_errors_total
 * reason (enum pc_accept_err); and 1 if e is a network error of that one
 * connection (the next accept may work), 0 if accepting must pause (out of
 * descriptors or memory, or an error that would repeat). */
unsigned gw_accept_reason(int e);
int gw_accept_lost_one(int e);

/* Drops to cfg->runas (setgroups via initgroups, setgid, setuid) and checks
 * that root cannot be regained. 0 when done or nothing to do (no user:, or
 * already running as exactly that user and group); -1 with err otherwise,
 * and then the gateway must not start. */
int gw_service_drop(const cfg_runas_t *ra, char *err, size_t errlen);
/* 1 once gw_service_drop switched this process from root to another uid. */
int gw_service_dropped(void);

/* Opens the datagram socket for $NOTIFY_SOCKET (before the drop; a no-op
 * without the variable). */
void gw_service_notify_init(void);
/* Sends state ("READY=1", "RELOADING=1", "STOPPING=1", with more
 * "KEY=value" lines as sd_notify(3) has them) to the service manager; a
 * no-op without $NOTIFY_SOCKET. Never blocks (a full socket: EAGAIN); a
 * failed send is logged once. Any thread. */
void gw_service_notify(const char *state);
void gw_service_notify_close(void);

#endif
