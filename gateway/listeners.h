/* gateway/listeners: the process's set of listening sockets.
 *
 * A gw_lset_t holds, for each configured listener, every listening socket of
 * that address the process serves (one per worker when the process bound
 * them itself; as many as the previous process had after a binary upgrade,
 * gateway/upgrade.h). It is the one place that knows them all: the workers
 * poll dup()s of them (gw_lset_worker_fds), the upgrade server hands them
 * to a new process. Thread-safe: every function takes the set's lock.
 */
#ifndef PORTCULLIS_LISTENERS_H
#define PORTCULLIS_LISTENERS_H

#include <stddef.h>

#include "../config/config.h"

typedef struct gw_lset gw_lset_t;

/* Boolean-like (0: nothing else holds it, -1 with err): is a live socket
 * of another process (or of this one) listening on a? Binds a socket with
 * SO_REUSEADDR and without SO_REUSEPORT, which only a listening socket on
 * an overlapping address refuses, and closes it. The refusal reads
 * "listen on <addr>: another process is already listening there (a second
 * gateway?); to replace a running gateway without dropping connections,
 * start the new one with --upgrade". Call it before binding a listener the
 * process does not hold yet (at the start, and for one a reload adds). */
int gw_listen_probe(const cfg_addr_t *a, char *err, size_t errlen);

/* An empty set for cfg's listeners (cfg must outlive it); NULL: no memory. */
gw_lset_t *gw_lset_new(const cfg_t *cfg);
/* Closes every socket it still holds. */
void gw_lset_free(gw_lset_t *s);

/* Takes fd, a listening socket received from another process, if its bound
 * address is one of the set's listeners: returns the listener's index; or
 * -1 (fd is then closed, err says why: not a listening TCP socket, or an
 * address the configuration no longer lists). */
int gw_lset_adopt(gw_lset_t *s, int fd, char *err, size_t errlen);

/* Boolean-like: every listener ends up with at least n sockets; those it
 * lacks are bound here (SO_REUSEPORT, gw_listen_socket). A listener that
 * has none yet is probed first (gw_listen_probe) unless probe is 0. */
int gw_lset_fill(gw_lset_t *s, size_t n, int probe, char *err, size_t errlen);

/* Boolean-like: the sockets worker `worker` of `nworkers` polls, as dup()s
 * the caller owns, in *fds (malloc'ed) and *n. Socket j of each listener
 * goes to worker j % nworkers, so with fewer workers than sockets a worker
 * polls several and none is left unpolled (gw_lset_fill gave every listener
 * at least nworkers). */
int gw_lset_worker_fds(gw_lset_t *s, int worker, int nworkers, int **fds, size_t *n,
                       char *err, size_t errlen);

/* The sockets in order (listener by listener, socket by socket), for the
 * upgrade server: returns how many there are; with idx < that count, fills
 * *fd, *listener (its index), *sock (index within the listener), *nsocks
 * (the listener's count) and *text (its address as written, valid while
 * the set lives). *fd is a dup() the caller closes (so a concurrent
 * gw_lset_close() cannot leave it a stale number). Boolean-like: -1 when
 * idx is out of range (the set was closed meanwhile) or dup() failed. */
size_t gw_lset_count(gw_lset_t *s);
int gw_lset_get(gw_lset_t *s, size_t idx, int *fd, size_t *listener, size_t *sock,
                size_t *nsocks, const char **text);

/* Closes the set's sockets now (a drain or a handover starts); the workers'
 * dup()s are theirs to close. Later gw_lset_count() calls return 0. */
void gw_lset_close(gw_lset_t *s);

#endif
