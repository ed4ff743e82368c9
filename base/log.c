/* base/log: structured lines to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = PC_INFO;
static int log_format = PC_LOG_TEXT;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void pc_log_setup(int level, int format)
{
    /* a reload changes them while workers log: atomics, no lock */
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
    __atomic_store_n(&log_format, format, __ATOMIC_RELAXED);
}

int pc_log_enabled(int level)
{
    return level <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
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

/* Length of the key at s if s starts a "key=" field (a letter or '_',
 * then letters, digits, '_', '-' or '.'), else 0. */
static size_t field_key(const char *s)
{
    size_t k = 0;
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    while ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
           (s[k] >= '0' && s[k] <= '9') || s[k] == '_' || s[k] == '-' || s[k] == '.')
        k++;
    return s[k] == '=' ? k : 0;
}

/* Where the value starting at v ends: at the space before the next
 * "key=", or at the end of the string. */
static const char *value_end(const char *v)
{
    for (const char *e = v; *e; e++) {
        if (*e != ' ')
            continue;
        const char *q = e;
        while (*q == ' ')
            q++;
        if (field_key(q))
            return e;
    }
    return v + strlen(v);
}

/* Appends the JSON string body of s[0..n) to out (capacity cap); returns
 * the new length. */
static size_t json_esc_n(char *out, size_t len, size_t cap, const char *s, size_t n)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1), s);
    return json_esc(out, len, cap, tmp);
}

static size_t put_lit(char *out, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 1 < cap; s++)
        out[len++] = *s;
    return len;
}

/* Appends ctx ("key=value key=value", see log.h: a value runs to the next
 * " key=" and may hold spaces) to out as JSON members, while len stays
 * below stop; returns the new length (< cap). */
static size_t ctx_json(char *out, size_t len, size_t cap, size_t stop, const char *ctx)
{
    const char *p = ctx;
    while (*p && len < stop) {
        size_t kl = field_key(p);
        if (!kl) {   /* not a field: skip a word */
            while (*p && *p != ' ')
                p++;
            while (*p == ' ')
                p++;
            continue;
        }
        const char *v = p + kl + 1, *e = value_end(v);
        len = put_lit(out, len, cap, ",\"");
        len = json_esc_n(out, len, cap, p, kl);
        len = put_lit(out, len, cap, "\":\"");
        len = json_esc_n(out, len, cap, v, (size_t)(e - v));
        len = put_lit(out, len, cap, "\"");
        p = e;
        while (*p == ' ')
            p++;
    }
    return len;
}

void pc_log(int level, const char *ctx, const char *fmt, ...)
{
    if (level > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
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
    if (__atomic_load_n(&log_format, __ATOMIC_RELAXED) == PC_LOG_JSON) {
        n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        if (ctx)
            n = ctx_json(line, n, sizeof(line), sizeof(line) - 64, ctx);
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
