/* base/log: one line per event, text or JSON, to stderr.
 * Lines about a connection carry its id, peer and current action (what it
 * was doing when the line was written). Thread-safe: each line is one write. */
#ifndef PORTCULLIS_LOG_H
#define PORTCULLIS_LOG_H


/* Levels and formats; config/ uses the same values (CFG_LOG_*). */
enum pc_log_level { PC_ERR = 0, PC_WARN, PC_INFO, PC_DEBUG };
enum pc_log_format { PC_LOG_TEXT = 0, PC_LOG_JSON };

void pc_log_setup(int level, int format);
int pc_log_enabled(int level);
/* ctx: "key=value key=value" fields, or NULL. A value runs up to the next
 * " key=" (key: a letter or '_', then letters, digits, '_', '-', '.'), so
 * it may contain spaces (action=waiting for request). */
void pc_log(int level, const char *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
