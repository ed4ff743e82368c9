/* gateway/log: one line per event, text or JSON, to stderr.
 * Lines about a connection carry its id, peer and current action (what it
 * was doing when the line was written). Thread-safe: each line is one write. */
#ifndef PORTCULLIS_LOG_H
#define PORTCULLIS_LOG_H

#include "../config/config.h"

void gw_log_setup(int level, int format);
int gw_log_enabled(int level);
/* ctx: "key=value key=value" fields, or NULL. A value runs up to the next
 * " key=" (key: a letter or '_', then letters, digits, '_', '-', '.'), so
 * it may contain spaces (action=waiting for request). */
void gw_log(int level, const char *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define GW_ERR CFG_LOG_ERROR
#define GW_WARN CFG_LOG_WARN
#define GW_INFO CFG_LOG_INFO
#define GW_DEBUG CFG_LOG_DEBUG

#endif
