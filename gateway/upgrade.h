/* gateway/upgrade: hand the listening sockets to a new process (binary
 * upgrade without refusing a connection; docs/operations.md).
 *
 * The running gateway listens on a unix SOCK_SEQPACKET socket, config key
 * upgrade_socket (a path, or "@name" for an abstract one). A new process
 * started with --upgrade connects to it and the two exchange these messages,
 * one per packet:
 *
 *   new -> old   HELLO     its pid
 *   old -> new   LISTENER  one per listening socket, with the socket itself
 *                          (SCM_RIGHTS): listener index, socket index within
 *                          that listener, the listener's socket count, and
 *                          the listener's address as written in the config;
 *                          after the client listeners' sockets, those of the
 *                          admin and metrics listeners (listener index
 *                          GW_UPGRADE_HTTP_ADMIN, GW_UPGRADE_HTTP_METRICS;
 *                          one socket each)
 *   old -> new   END       how many LISTENER messages were sent
 *   new -> old   READY     its pid: it serves on the sockets now
 *   old -> new   DONE      the old pid: it closed its upgrade socket and
 *                          drains as on SIGTERM
 *   old -> new   ERROR     a reason, instead of any of the above; then close
 *
 * The new process matches each socket to its own listeners by the socket's
 * bound address (getsockname), so it serves on the very socket, and the
 * connections queued in its accept queue, that the old one served; the old
 * process closing its copies afterwards destroys nothing. Sockets of
 * addresses the new configuration lacks are closed; addresses it adds are
 * bound (after gw_listen_probe). The admin and metrics sockets go to the
 * new configuration's admin or metrics listener of the same address, which
 * accepts on them from the takeover on; the old process stops accepting on
 * them at READY (and answers what it still serves on them with Connection:
 * close). A process from before this handed over client listeners only
 * (its successor binds admin and metrics itself, so they need other
 * addresses for that one upgrade); one that predates it closes what it does
 * not know, with a log line. The wire format is unchanged (version 1).
 *
 * Wire format (integers big-endian): bytes 0-3 "PCUG", 4 version (1),
 * 5 type, 6-7 the message's total length, then by type:
 *   HELLO, READY, DONE, END: u32 value                          (12 bytes)
 *   LISTENER: u16 listener, u16 socket, u16 sockets, u16 n, n bytes of text
 *   ERROR: u16 n, n bytes of text
 * Text is 1..GW_UPGRADE_MAX_TEXT printable ASCII bytes, no NUL.
 *
 * Only a peer with the gateway's own uid (or root) is served (SO_PEERCRED,
 * checked on both ends; a gateway that dropped from root to user: serves
 * root, or the process it started on SIGUSR2, and no other process of its
 * uid); any other peer, a malformed message or one out of
 * order gets ERROR and is disconnected, and the old process keeps serving.
 */
#ifndef PORTCULLIS_UPGRADE_H
#define PORTCULLIS_UPGRADE_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime.h"

enum gw_upgrade_type {
    GW_UPGRADE_HELLO = 1,
    GW_UPGRADE_LISTENER = 2,
    GW_UPGRADE_END = 3,
    GW_UPGRADE_READY = 4,
    GW_UPGRADE_DONE = 5,
    GW_UPGRADE_ERROR = 6,
};

#define GW_UPGRADE_VERSION 1
/* LISTENER listener indexes of the plain-HTTP listeners (client listeners
 * are fewer than 1025, config/config.c) */
#define GW_UPGRADE_HTTP_ADMIN 0xfffe
#define GW_UPGRADE_HTTP_METRICS 0xffff
#define GW_UPGRADE_MAX_TEXT 200
#define GW_UPGRADE_MAX_MSG (16 + GW_UPGRADE_MAX_TEXT)
/* How long the new process waits for each answer of the old one. */
#define GW_UPGRADE_TIMEOUT_MS 10000

typedef struct {
    int type;                  /* enum gw_upgrade_type */
    uint32_t value;            /* HELLO, READY, DONE: a pid; END: the socket count */
    uint16_t listener, sock, nsocks;  /* LISTENER */
    const char *text;          /* LISTENER: address; ERROR: reason; not NUL-terminated */
    size_t textlen;
} gw_upgrade_msg_t;

/* Parses buf[0..n) as exactly one message. Returns its type (> 0) with *m
 * filled (m->text points into buf), or -1 if buf is anything else: short,
 * long, a wrong magic, version, type or length field, a text of 0 or more
 * than GW_UPGRADE_MAX_TEXT bytes or with a byte outside 0x20..0x7e, or
 * (LISTENER) a socket index not below the socket count. Pure: no
 * allocation, no state; *m is left alone on -1. */
int gw_upgrade_parse(const unsigned char *buf, size_t n, gw_upgrade_msg_t *m);

/* Writes message m into buf (cap bytes). Returns its length, or 0 if m
 * could not be parsed back (bad type, text) or cap is too small. */
size_t gw_upgrade_encode(const gw_upgrade_msg_t *m, unsigned char *buf, size_t cap);

/* ---- the running (old) process: on the control thread's event base ---- */

typedef struct gw_upgrade_server gw_upgrade_server_t;

/* Called (on the event base's thread) when a new process sent READY: the
 * old process must now drain as on SIGTERM. */
typedef void (*gw_upgrade_ready_fn)(void *arg, pid_t new_pid);

/* Binds and listens on addr (a path or "@name") and serves handovers of the
 * current generation's sockets (gw_proc_socket); ready is called on READY. A path left behind by a
 * process that is gone is replaced; one a live process listens on is not.
 * NULL with err on failure. Non-blocking throughout. */
gw_upgrade_server_t *gw_upgrade_server_start(struct event_base *base, const char *addr,
                                             gw_proc_t *proc, gw_upgrade_ready_fn ready,
                                             void *arg, char *err, size_t errlen);
/* Stops listening and frees; call with the event base's loop stopped (or on
 * its thread). NULL is a no-op. */
void gw_upgrade_server_free(gw_upgrade_server_t *s);
/* The drain began: the upgrade socket closes (a new gateway can start and
 * bind it), unless a handover is in progress. On the server's thread. */
void gw_upgrade_server_stop(gw_upgrade_server_t *s);

/* The pid of the process this one started on SIGUSR2 (0: none). A process
 * that dropped from root to user: hands over to root, or to that very
 * process (same uid), and to no other process of its uid. Any thread. */
void gw_upgrade_expect_child(pid_t pid);

/* ---- the new process (--upgrade): blocking, each step within a timeout ---- */

typedef struct gw_upgrade_client gw_upgrade_client_t;

/* Connects to addr, receives every listening socket of the running process
 * and gives those of cfg's addresses to proc (gw_proc_adopt; the others are
 * closed, with a log line), for the next gw_gen_listen. NULL with err if no gateway answers, it refuses, or a step
 * takes more than timeout_ms. The connection stays open for
 * gw_upgrade_ready(). */
gw_upgrade_client_t *gw_upgrade_fetch(const char *addr, gw_proc_t *proc, const cfg_t *cfg,
                                      uint64_t timeout_ms, char *err, size_t errlen);
/* Sends READY (the caller serves on the sockets now) and waits for DONE.
 * Boolean-like; on -1 (err) the old process may still be serving. Frees c. */
int gw_upgrade_ready(gw_upgrade_client_t *c, char *err, size_t errlen);
/* Gives up without READY (the start failed): the old process keeps
 * serving. NULL is a no-op. */
void gw_upgrade_client_free(gw_upgrade_client_t *c);

#endif
