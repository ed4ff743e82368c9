/* gateway/log: structured lines to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = CFG_LOG_INFO;
static int log_format = CFG_LOG_TEXT;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void gw_log_setup(int level, int format)
{
    log_level = level;
    log_format = format;
}

int gw_log_enabled(int level)
{
    return level <= log_level;
}

/* Appends s to out as a JSON string body (no quotes); returns new length. */
static size_t json_esc(char *out, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
        } else {
            out[len++] = (char)c;
        }
    }
    return len;
}

void gw_log(int level, const char *ctx, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[1024], line[2048], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)   /* one event, one line */
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    size_t n;
    if (log_format == CFG_LOG_JSON) {
        n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        /* ctx is "k=v k=v"; values have no spaces (callers make sure) */
        if (ctx) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", ctx);
            char *save = NULL;
            for (char *kv = strtok_r(tmp, " ", &save); kv && n < sizeof(line) - 64; kv = strtok_r(NULL, " ", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq)
                    continue;
                *eq = '\0';
                n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"");
                n = json_esc(line, n, sizeof(line), kv);
                n += (size_t)snprintf(line + n, sizeof(line) - n, "\":\"");
                n = json_esc(line, n, sizeof(line), eq + 1);
                n += (size_t)snprintf(line + n, sizeof(line) - n, "\"");
            }
        }
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":\"");
        n = json_esc(line, n, sizeof(line), msg);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %-5s %s%s%s\n", ts, level_names[level],
                             ctx ? ctx : "", ctx ? " " : "", msg);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
