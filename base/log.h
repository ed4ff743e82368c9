/* base/log: one line per event, text or JSON, to stderr or a file.
 *
 * A line has a time (RFC 3339 UTC, milliseconds), a level, an event (a
 * short snake_case name: "reload", "tls_handshake_failed", "access", ...),
 * optional context fields and a message. In JSON every line is one object
 * {"time","level","event",<fields>...,"msg"}; in text it is
 * "<time> <level> <fields as key=value> <msg>" (the event is not repeated
 * in generic text lines, so existing text log patterns keep matching).
 *
 * Lines never block the thread that logs once the writer runs
 * (pc_log_start): each thread appends to its own bounded ring buffer
 * (logging.buffer bytes), and one writer thread does the blocking writes.
 * A line that does not fit in its thread's ring is dropped and counted
 * (portcullis_log_lines_dropped_total). Before pc_log_start and after
 * pc_log_stop lines are written synchronously, so startup and shutdown
 * errors are never lost.
 *
 * A write the destination fails (ENOSPC, EIO, EPIPE, ...) loses its lines:
 * each is counted in the same metric, a line it cut is ended by the next
 * write (so the others still parse one per line), and once writing works
 * again one line (event log_write_failed, at most once a minute) says how
 * many were lost and why. */
#ifndef PORTCULLIS_LOG_H
#define PORTCULLIS_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Levels and formats; config/ uses the same values (CFG_LOG_*). */
enum pc_log_level { PC_ERR = 0, PC_WARN, PC_INFO, PC_DEBUG };
enum pc_log_format { PC_LOG_TEXT = 0, PC_LOG_JSON };

/* Longest line (longer ones are cut, still one valid line). */
#define PC_LOG_LINE_MAX 4096
/* logging.buffer: bytes of each thread's ring (default, bounds). */
#define PC_LOG_BUFFER_DEFAULT (256u * 1024)
#define PC_LOG_BUFFER_MIN (16u * 1024)
#define PC_LOG_BUFFER_MAX (64u * 1024 * 1024)

void pc_log_setup(int level, int format);
int pc_log_enabled(int level);

/* ctx: "key=value key=value" fields, or NULL. A value runs up to the next
 * " key=" (key: a letter or '_', then letters, digits, '_', '-', '.'), so
 * it may contain spaces (action=waiting for request).
 * pc_log's event is the generic "log"; pc_log_ev names it. */
void pc_log(int level, const char *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pc_log_ev(int level, const char *event, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- lines with typed fields (the access log, configuration errors) ----
 * pc_logb_begin returns 0 when level is not logged (the other calls are
 * then no-ops); fields are appended in order; pc_logb_end adds the message
 * (fmt may be NULL: no message) and emits the line. In JSON numbers and
 * booleans are JSON numbers and booleans and a NULL string is null; in
 * text a value with a space, '"' or '=' is quoted, a NULL string is "-". */
typedef struct {
    char buf[PC_LOG_LINE_MAX];
    size_t len;
    int level, json, on;
} pc_logb_t;

int pc_logb_begin(pc_logb_t *b, int level, const char *event);
void pc_logb_str(pc_logb_t *b, const char *key, const char *val);
void pc_logb_strn(pc_logb_t *b, const char *key, const char *val, size_t n);
void pc_logb_int(pc_logb_t *b, const char *key, long long v);
void pc_logb_uint(pc_logb_t *b, const char *key, unsigned long long v);
void pc_logb_ms(pc_logb_t *b, const char *key, double ms);   /* 3 decimals */
void pc_logb_bool(pc_logb_t *b, const char *key, int v);
void pc_logb_ctx(pc_logb_t *b, const char *ctx);             /* "key=value ..." as above */
void pc_logb_end(pc_logb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A configuration error "file:line:col: key.path: message" (cfg_errors_t)
 * as one line, event "config_error", with file, line, column and key as
 * fields when the text has that form (else all of it in msg). */
void pc_log_config_error(int level, const char *prefix, const char *err);

/* Splits "file:line:col: key.path: message". Pure, no allocation. Returns
 * 1 and fills the spans (key may be empty: *keyn == 0) when s has that
 * form; else 0 and nothing is set. */
int pc_log_split_error(const char *s, size_t *filen, unsigned long *line, unsigned long *col,
                       const char **key, size_t *keyn, const char **msg);

/* ---- where lines go ----
 * pc_log_file: path NULL: stderr; else the file, opened O_WRONLY|O_APPEND|
 * O_CREAT, mode 0640. Returns 0, 1 when path is the current one (nothing
 * changes; pc_log_reopen opens it again), or -1 with err set and the
 * current destination kept.
 * pc_log_reopen: the current file opened again by its name (SIGUSR1, after
 * logrotate renamed it); 0 on success, 1 with stderr (nothing to reopen),
 * -1 with err set (the old file stays in use). Both may be called from any
 * thread. */
int pc_log_file(const char *path, char *err, size_t errlen);
int pc_log_reopen(char *err, size_t errlen);
/* Gives the current log file to uid:gid (fchown; before a drop of
 * privileges, so that the dropped process can open it again). 0 (also with
 * stderr: nothing to do), or -1 with err set. */
int pc_log_chown(unsigned uid, unsigned gid, char *err, size_t errlen);

/* Starts the writer thread; from then on every thread logs into its own
 * ring of buffer_bytes. Returns 0, or -1 (lines stay synchronous). */
int pc_log_start(size_t buffer_bytes);
/* Drains every ring (waiting at most wait_ms for a stalled destination),
 * stops the writer; lines are synchronous again. A line logged during the
 * stop is written (after the last drain) or counted as dropped. When the
 * destination did not take the lines within wait_ms, the writer is left
 * blocked on it and later lines are dropped and counted (the exit never
 * waits for it); pc_log_start then refuses (-1). */
void pc_log_stop(unsigned wait_ms);
/* Lines lost since the start: dropped because a ring was full (or after
 * an abandoned stop), or lost to a failed write; also counted in the
 * metric LOG_DROPPED. */
uint64_t pc_log_dropped(void);

#endif
