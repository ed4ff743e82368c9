/* base/log: structured lines, per-thread rings, one writer thread.
 *
 * Producers (any thread) format a line on their stack and append it to
 * their own single-producer/single-consumer byte ring; the writer thread
 * is the only consumer of every ring and the only thread that writes to
 * the destination while it runs. A producer never takes a lock or makes
 * a syscall for a line, except to wake the writer when it sleeps (one
 * eventfd write per sleep of the writer, whoever logs first). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

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

/* ================================================================ formatting */

/* Room kept at the end of a line for the message and the closing: fields
 * stop FIELD_STOP bytes before the end, the message 4 bytes before. */
#define FIELD_STOP 160

/* Appends the JSON string body of s[0..n) (n = (size_t)-1: up to its NUL)
 * to b while its length stays below stop. */
/* Length of the well-formed UTF-8 sequence at s (at most n bytes): 1..4,
 * or 0 (a stray continuation byte, an overlong form, a surrogate, a code
 * point past U+10FFFF, a cut sequence). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!k || k > n)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||   /* overlong, surrogate */
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))     /* overlong, > U+10FFFF */
        return 0;
    return k;
}

/* Appends s[0..n) (or up to its NUL) as a JSON string body while the line
 * stays below stop: '"', '\\' and control bytes escaped, well-formed UTF-8
 * kept, every other byte written as U+FFFD, so the line is valid JSON. */
static void json_esc(pc_logb_t *b, const char *s, size_t n, size_t stop)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && u[i] && b->len + 7 < stop;) {
        unsigned char c = u[i];
        size_t k = c < 0x80 ? 1 : utf8_seq(u + i, strnlen(s + i, n - i));
        if (c == '"' || c == '\\') {
            b->buf[b->len++] = '\\';
            b->buf[b->len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(b->buf + b->len, "\\u00", 4);
            b->buf[b->len + 4] = hex[c >> 4];
            b->buf[b->len + 5] = hex[c & 15];
            b->len += 6;
        } else if (k) {
            memcpy(b->buf + b->len, s + i, k);   /* k <= 4 < the 7 bytes of room */
            b->len += k;
            i += k;
            continue;
        } else {
            memcpy(b->buf + b->len, "\\ufffd", 6);
            b->len += 6;
        }
        i++;
    }
}

static void put(pc_logb_t *b, const char *s, size_t stop)
{
    for (; *s && b->len + 1 < stop; s++)
        b->buf[b->len++] = *s;
}

/* A text value needs quotes when it is empty or holds a space, '"', '='
 * or a control character. */
static int text_needs_quotes(const char *s, size_t n)
{
    if (n == 0 || !*s)
        return 1;
    for (size_t i = 0; i < n && s[i]; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == '"' || s[i] == '=' || s[i] == 0x7f)
            return 1;
    return 0;
}

static void text_val(pc_logb_t *b, const char *s, size_t n, size_t stop)
{
    if (!text_needs_quotes(s, n)) {
        for (size_t i = 0; i < n && s[i] && b->len + 1 < stop; i++)
            b->buf[b->len++] = s[i];
        return;
    }
    put(b, "\"", stop);
    for (size_t i = 0; i < n && s[i] && b->len + 3 < stop; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            b->buf[b->len++] = '\\';
        b->buf[b->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    put(b, "\"", stop + 1);
}

/* The time of a line: the seconds part is formatted once per second per
 * thread. */
static void put_time(pc_logb_t *b)
{
    static __thread time_t sec = -1;
    static __thread char prefix[24];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        sec = tv.tv_sec;
    }
    int ms = (int)(tv.tv_usec / 1000);
    b->len += (size_t)snprintf(b->buf + b->len, sizeof b->buf - b->len, "%s.%03dZ", prefix, ms);
}

int pc_logb_begin(pc_logb_t *b, int level, const char *event)
{
    b->len = 0;
    b->on = level >= 0 && level <= PC_DEBUG && pc_log_enabled(level);
    if (!b->on)
        return 0;
    b->level = level;
    b->json = __atomic_load_n(&log_format, __ATOMIC_RELAXED) == PC_LOG_JSON;
    if (!event || !*event)
        event = "log";
    if (b->json) {
        put(b, "{\"time\":\"", FIELD_STOP);
        put_time(b);
        put(b, "\",\"level\":\"", FIELD_STOP);
        put(b, level_names[level], FIELD_STOP);
        put(b, "\",\"event\":\"", FIELD_STOP);
        json_esc(b, event, (size_t)-1, FIELD_STOP);
        put(b, "\"", FIELD_STOP);
    } else {
        put_time(b);
        b->len += (size_t)snprintf(b->buf + b->len, sizeof b->buf - b->len, " %-5s", level_names[level]);
        if (strcmp(event, "log") != 0) {
            put(b, " event=", FIELD_STOP);
            text_val(b, event, strlen(event), FIELD_STOP);
        }
    }
    return 1;
}

static size_t field_stop(const pc_logb_t *b)
{
    return sizeof b->buf - FIELD_STOP;
}

/* Starts member key: ,"key": in JSON, " key=" in text. Returns 0 (and
 * writes nothing) when the line has no room left for another field. */
static int key_open(pc_logb_t *b, const char *key, size_t kl)
{
    size_t stop = field_stop(b);
    if (kl > 64 || b->len + kl * 6 + 24 >= stop)
        return 0;
    if (b->json) {
        put(b, ",\"", stop);
        json_esc(b, key, kl, stop);
        put(b, "\":", stop);
    } else {
        put(b, " ", stop);
        for (size_t i = 0; i < kl && b->len + 1 < stop; i++)
            b->buf[b->len++] = key[i];
        put(b, "=", stop);
    }
    return 1;
}

void pc_logb_strn(pc_logb_t *b, const char *key, const char *val, size_t n)
{
    if (!b->on)
        return;
    size_t stop = field_stop(b);
    if (!key_open(b, key, strlen(key)))
        return;
    if (!val) {
        put(b, b->json ? "null" : "-", stop);
    } else if (b->json) {
        put(b, "\"", stop);
        json_esc(b, val, n, stop - 1);
        put(b, "\"", stop);
    } else {
        text_val(b, val, n, stop - 1);
    }
}

void pc_logb_str(pc_logb_t *b, const char *key, const char *val)
{
    pc_logb_strn(b, key, val, (size_t)-1);
}

static void logb_raw(pc_logb_t *b, const char *key, const char *num)
{
    if (!b->on || !key_open(b, key, strlen(key)))
        return;
    put(b, num, field_stop(b));
}

void pc_logb_int(pc_logb_t *b, const char *key, long long v)
{
    char n[24];
    snprintf(n, sizeof n, "%lld", v);
    logb_raw(b, key, n);
}

void pc_logb_uint(pc_logb_t *b, const char *key, unsigned long long v)
{
    char n[24];
    snprintf(n, sizeof n, "%llu", v);
    logb_raw(b, key, n);
}

void pc_logb_ms(pc_logb_t *b, const char *key, double ms)
{
    char n[32];
    snprintf(n, sizeof n, "%.3f", ms >= 0 && ms < 1e12 ? ms : 0.0);
    logb_raw(b, key, n);
}

void pc_logb_bool(pc_logb_t *b, const char *key, int v)
{
    logb_raw(b, key, v ? "true" : "false");
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

void pc_logb_ctx(pc_logb_t *b, const char *ctx)
{
    if (!b->on || !ctx || !*ctx)
        return;
    if (!b->json) {   /* text: the context as written, control bytes as spaces (one line) */
        put(b, " ", field_stop(b));
        for (const char *p = ctx; *p && b->len + 1 < field_stop(b); p++)
            b->buf[b->len++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
        return;
    }
    const char *p = ctx;
    while (*p && b->len < field_stop(b)) {
        size_t kl = field_key(p);
        if (!kl) {   /* not a field: skip a word */
            while (*p && *p != ' ')
                p++;
            while (*p == ' ')
                p++;
            continue;
        }
        const char *v = p + kl + 1, *e = value_end(v);
        if (!key_open(b, p, kl))
            break;
        put(b, "\"", field_stop(b));
        json_esc(b, v, (size_t)(e - v), field_stop(b) - 1);
        put(b, "\"", field_stop(b));
        p = e;
        while (*p == ' ')
            p++;
    }
}

static void emit(const char *line, size_t n);

/* Adds the message and the line's end to b (which must be on). */
__attribute__((format(printf, 2, 0)))
static void logb_close(pc_logb_t *b, const char *fmt, va_list ap)
{
    char msg[2048];
    msg[0] = '\0';
    if (fmt)
        vsnprintf(msg, sizeof msg, fmt, ap);
    size_t cap = sizeof b->buf;
    if (b->json) {
        if (fmt) {
            put(b, ",\"msg\":\"", cap - 4);
            json_esc(b, msg, (size_t)-1, cap - 4);
            b->buf[b->len++] = '"';
        }
        b->buf[b->len++] = '}';
    } else if (msg[0]) {
        for (char *p = msg; *p; p++)   /* one event, one line, no terminal escapes */
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        put(b, " ", cap - 2);
        put(b, msg, cap - 2);
    }
    b->buf[b->len++] = '\n';
    b->on = 0;
}

__attribute__((format(printf, 2, 0)))
static void logb_vend(pc_logb_t *b, const char *fmt, va_list ap)
{
    if (!b->on)
        return;
    logb_close(b, fmt, ap);
    emit(b->buf, b->len);
}

/* logb_close with variadic arguments. */
__attribute__((format(printf, 2, 3)))
static void logb_close_f(pc_logb_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    logb_close(b, fmt, ap);
    va_end(ap);
}

void pc_logb_end(pc_logb_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    logb_vend(b, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 0)))
static void vlog(int level, const char *event, const char *ctx, const char *fmt, va_list ap)
{
    pc_logb_t b;
    if (!pc_logb_begin(&b, level, event))
        return;
    pc_logb_ctx(&b, ctx);
    logb_vend(&b, fmt, ap);
}

void pc_log(int level, const char *ctx, const char *fmt, ...)
{
    if (!pc_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, "log", ctx, fmt, ap);
    va_end(ap);
}

void pc_log_ev(int level, const char *event, const char *ctx, const char *fmt, ...)
{
    if (!pc_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, ctx, fmt, ap);
    va_end(ap);
}

/* ================================================================ configuration errors */

static size_t digits(const char *s, unsigned long *v)
{
    size_t i = 0;
    unsigned long x = 0;
    while (s[i] >= '0' && s[i] <= '9' && i < 9)
        x = x * 10 + (unsigned long)(s[i++] - '0');
    if (s[i] >= '0' && s[i] <= '9')
        return 0;   /* more than 9 digits: not a position */
    *v = x;
    return i;
}

/* The first ":<digits>:<digits>: " in s ends the file name. A key path
 * follows when the next ": " comes before any space. */
int pc_log_split_error(const char *s, size_t *filen, unsigned long *line, unsigned long *col,
                       const char **key, size_t *keyn, const char **msg)
{
    for (const char *p = s; (p = strchr(p, ':')) != NULL; p++) {
        unsigned long l, c;
        size_t dl = digits(p + 1, &l);
        if (p == s || !dl || p[1 + dl] != ':')
            continue;
        size_t dc = digits(p + 2 + dl, &c);
        const char *q = p + 2 + dl + dc;
        if (!dc || q[0] != ':' || q[1] != ' ')
            continue;
        const char *rest = q + 2, *k = rest;
        while (*k && *k != ' ' && !(k[0] == ':' && k[1] == ' '))
            k++;
        *filen = (size_t)(p - s);
        *line = l;
        *col = c;
        if (k[0] == ':' && k[1] == ' ' && k > rest) {
            *key = rest;
            *keyn = (size_t)(k - rest);
            *msg = k + 2;
        } else {
            *key = rest;
            *keyn = 0;
            *msg = rest;
        }
        return 1;
    }
    return 0;
}

void pc_log_config_error(int level, const char *prefix, const char *err)
{
    pc_logb_t b;
    if (!pc_logb_begin(&b, level, "config_error"))
        return;
    size_t fl, kl;
    unsigned long line, col;
    const char *key, *msg;
    if (!b.json || !pc_log_split_error(err, &fl, &line, &col, &key, &kl, &msg)) {
        pc_logb_end(&b, "%s%s", prefix ? prefix : "", err);   /* text: as it always was */
        return;
    }
    pc_logb_strn(&b, "file", err, fl);
    pc_logb_uint(&b, "line", line);
    pc_logb_uint(&b, "column", col);
    if (kl)
        pc_logb_strn(&b, "key", key, kl);
    pc_logb_end(&b, "%s%s", prefix ? prefix : "", msg);
}

/* ================================================================ destination */

/* The destination: out_fd (stderr, or the file out_path). While the
 * writer runs it alone writes to out_fd; a new fd is handed to it in
 * pending_fd and it adopts it (closing the old one). Everything here under
 * out_mu. */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static int out_fd = STDERR_FILENO;
static char *out_path;
static int pending_fd = -1;
static int writer_on;       /* the writer owns out_fd */
static int abandoned;       /* the writer was left blocked at the stop: lines are dropped */

/* What the writes to out_fd left behind. Touched only by the thread that
 * writes: the writer while it runs, else whoever holds out_mu. */
static int mid_line;              /* a failed write stopped inside a line */
static uint64_t lost_unreported;  /* lines lost to failed writes, not yet reported */
static int lost_errno;            /* the error of the last failed write */
static int64_t reported_at = -1;  /* CLOCK_MONOTONIC ms of the last report, -1: none */
static uint64_t write_lost;       /* lines ever lost to failed writes (atomic) */

/* At most one line about lines lost to failed writes this often. */
#define LOST_REPORT_EVERY_S 60

static void close_dest(int fd)
{
    if (fd >= 0 && fd != STDERR_FILENO)
        close(fd);
}

/* Writes all of iov (blocking; waits for a non-blocking fd; iov is
 * consumed). Returns the bytes written: all of them with *err 0, or fewer
 * with *err the error that stopped it (ENOSPC, EIO, EPIPE, ...). */
static size_t write_all(int fd, struct iovec *iov, int cnt, int *err)
{
    size_t done = 0;
    *err = 0;
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            poll(&pf, 1, 1000);
            continue;
        }
        if (w <= 0) {   /* 0 for a non-empty write: nothing will ever go */
            *err = w < 0 ? errno : EIO;
            return done;
        }
        done += (size_t)w;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return done;
}

/* In the bytes of v[0..cnt) from offset from on: the number of '\n'
 * (nl), and whether the byte before from is one (*at_end; 1 for from 0). */
static size_t newlines_from(const struct iovec *v, int cnt, size_t from, int *at_end)
{
    size_t nl = 0, off = 0;
    *at_end = 1;
    for (int i = 0; i < cnt; off += v[i].iov_len, i++) {
        const char *p = v[i].iov_base;
        for (size_t k = 0; k < v[i].iov_len; k++) {
            if (off + k >= from)
                nl += p[k] == '\n';
            else if (off + k + 1 == from)
                *at_end = p[k] == '\n';
        }
    }
    return nl;
}

/* Writes whole lines (v holds complete lines), ending first a line a
 * failed write left cut. Returns 0; or -1 when a write failed: every line
 * not written whole is counted as lost (LOG_DROPPED), and a cut one is
 * ended by the next write. */
static int put_lines(int fd, const struct iovec *v, int cnt)
{
    struct iovec iov[4];
    int n = 0;
    size_t pre = mid_line ? 1 : 0;
    if (pre)
        iov[n++] = (struct iovec){(void *)"\n", 1};
    for (int i = 0; i < cnt && n < 4; i++)
        iov[n++] = v[i];
    int err;
    size_t w = write_all(fd, iov, n, &err);
    if (!err) {
        mid_line = 0;
        return 0;
    }
    int at_end = 1;
    size_t lost = newlines_from(v, cnt, w > pre ? w - pre : 0, &at_end);
    if (w >= pre)
        mid_line = !at_end;   /* else still cut, and cut again */
    lost_unreported += lost;
    lost_errno = err;
    __atomic_fetch_add(&write_lost, lost, __ATOMIC_RELAXED);
    pc_mx_add(PC_M_LOG_DROPPED, lost);
    return -1;
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Once writes work again: one line saying how many were lost, at most
 * every LOST_REPORT_EVERY_S (the lines lost in between are in the next). */
static void report_lost(int fd)
{
    int64_t now = mono_ms();
    if (reported_at >= 0 && now - reported_at < LOST_REPORT_EVERY_S * 1000)
        return;
    uint64_t n = lost_unreported;
    pc_logb_t b;
    if (pc_logb_begin(&b, PC_ERR, "log_write_failed")) {
        pc_logb_uint(&b, "lines_lost", n);
        pc_logb_str(&b, "error", strerror(lost_errno));
        logb_close_f(&b, "%llu log lines lost: writing the log failed (%s); they are counted in "
                     "portcullis_log_lines_dropped_total", (unsigned long long)n, strerror(lost_errno));
        struct iovec v = {b.buf, b.len};
        if (put_lines(fd, &v, 1) < 0)
            return;
    }
    lost_unreported -= n;
    reported_at = now;
}

/* Writes whole lines to fd (the writer, or a holder of out_mu). */
static void write_lines(int fd, const struct iovec *v, int cnt)
{
    if (put_lines(fd, v, cnt) == 0 && lost_unreported)
        report_lost(fd);
}

static void wake_writer(void);

static int set_dest(int fd, const char *path, char *err, size_t errlen)
{
    char *copy = NULL;
    if (path && !(copy = strdup(path))) {
        close_dest(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&out_mu);
    free(out_path);
    out_path = copy;
    int old = -1;
    if (writer_on) {
        old = pending_fd;   /* never adopted: replaced */
        pending_fd = fd;
    } else {
        old = out_fd;
        out_fd = fd;
        mid_line = 0;       /* a cut line stays in the old destination */
    }
    pthread_mutex_unlock(&out_mu);
    close_dest(old);
    wake_writer();
    return 0;
}

static int open_log(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        snprintf(err, errlen, "cannot open log file \"%s\": %s", path, strerror(errno));
    return fd;
}

int pc_log_file(const char *path, char *err, size_t errlen)
{
    pthread_mutex_lock(&out_mu);
    int same = (!path && !out_path) || (path && out_path && strcmp(path, out_path) == 0);
    pthread_mutex_unlock(&out_mu);
    if (same)
        return 1;
    int fd = STDERR_FILENO;
    if (path && (fd = open_log(path, err, errlen)) < 0)
        return -1;
    return set_dest(fd, path, err, errlen);
}

int pc_log_reopen(char *err, size_t errlen)
{
    char path[4096];
    pthread_mutex_lock(&out_mu);
    int have = out_path != NULL;
    if (have)
        snprintf(path, sizeof path, "%s", out_path);
    pthread_mutex_unlock(&out_mu);
    if (!have)
        return 1;
    int fd = open_log(path, err, errlen);
    return fd < 0 ? -1 : set_dest(fd, path, err, errlen);
}

int pc_log_chown(unsigned uid, unsigned gid, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&out_mu);
    int fd = pending_fd >= 0 ? pending_fd : out_fd;
    if (out_path && fd != STDERR_FILENO && fchown(fd, (uid_t)uid, (gid_t)gid) != 0) {
        snprintf(err, errlen, "cannot give the log file \"%s\" to uid %u, gid %u: %s", out_path,
                 uid, gid, strerror(errno));
        rc = -1;
    }
    pthread_mutex_unlock(&out_mu);
    return rc;
}

/* ================================================================ rings */

typedef struct ring {
    char *buf;
    size_t cap;
    struct ring *next;          /* the list: pushed by producers under reg_mu */
    int dead;                   /* its thread exited: the writer frees it once empty */
    _Alignas(64) uint64_t head; /* bytes appended (producer) */
    int busy;                   /* the producer is appending (see ring_put) */
    uint64_t dropped;           /* lines dropped (producer writes, anyone reads) */
    _Alignas(64) uint64_t tail; /* bytes written out (writer) */
} ring_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;  /* the list */
static pthread_mutex_t life_mu = PTHREAD_MUTEX_INITIALIZER; /* start/stop (never held by the writer) */
static ring_t *rings;
static size_t ring_cap;
static int async_on;            /* producers use their rings; changed under out_mu */
static int stop_asked;
static int sleeping;            /* the writer is about to wait, or waits, on wake_fd */
static int wake_fd = -1;
static pthread_t writer;
static uint64_t dropped_other;  /* lines dropped without a ring */
static pthread_key_t ring_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static __thread ring_t *my;
static __thread int my_none;    /* no ring for this thread (out of memory, or exiting) */

static void ring_release(void *arg)
{
    ring_t *r = arg;
    my = NULL;
    my_none = 1;
    __atomic_store_n(&r->dead, 1, __ATOMIC_RELEASE);
}

static void make_key(void)
{
    if (pthread_key_create(&ring_key, ring_release) != 0)
        ring_key = (pthread_key_t)-1;
}

static ring_t *my_ring(void)
{
    if (my || my_none)
        return my;
    pthread_once(&key_once, make_key);
    ring_t *r = NULL;
    if (posix_memalign((void **)&r, 64, sizeof *r) == 0) {
        memset(r, 0, sizeof *r);
        r->cap = ring_cap;
        if (!(r->buf = malloc(r->cap))) {
            free(r);
            r = NULL;
        }
    }
    if (!r || pthread_setspecific(ring_key, r) != 0) {
        if (r)
            free(r->buf);
        free(r);
        my_none = 1;
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    r->next = rings;
    __atomic_store_n(&rings, r, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_mu);
    return my = r;
}

static void wake_writer(void)
{
    if (__atomic_load_n(&sleeping, __ATOMIC_SEQ_CST) && __atomic_exchange_n(&sleeping, 0, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t w = write(wake_fd, &one, sizeof one);
        (void)w;
    }
}

static void count_drop(ring_t *r)
{
    if (r)
        __atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&dropped_other, 1, __ATOMIC_RELAXED);
    pc_count(LOG_DROPPED);
}

/* Appends one whole line to the calling thread's ring, or drops it;
 * returns 1, or 0 when the rings are off (the caller writes the line).
 * busy is set before async_on is read, and pc_log_stop clears async_on
 * before it waits for busy to clear: either the line is in the ring
 * before the stop's last drain, or this thread sees the rings off. */
static int ring_put(const char *line, size_t n)
{
    ring_t *r = my_ring();
    if (!r) {
        count_drop(NULL);
        return 1;
    }
    __atomic_store_n(&r->busy, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&async_on, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&r->busy, 0, __ATOMIC_RELEASE);
        return 0;
    }
    uint64_t h = r->head, t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    if (r->cap - (size_t)(h - t) < n) {
        count_drop(r);
    } else {
        size_t off = (size_t)(h % r->cap), first = r->cap - off < n ? r->cap - off : n;
        memcpy(r->buf + off, line, first);
        memcpy(r->buf, line + first, n - first);
        __atomic_store_n(&r->head, h + n, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&r->busy, 0, __ATOMIC_RELEASE);
    wake_writer();
    return 1;
}

/* A line written by the thread that logs (no writer running); returns 0
 * when the writer started meanwhile (the line goes to the ring). Under
 * out_mu, so it never interleaves with another write. */
static int write_sync(const char *line, size_t n)
{
    pthread_mutex_lock(&out_mu);
    if (__atomic_load_n(&async_on, __ATOMIC_SEQ_CST)) {
        pthread_mutex_unlock(&out_mu);
        return 0;
    }
    if (abandoned) {   /* the writer still blocks on the destination: never wait for it */
        count_drop(NULL);
    } else {
        struct iovec iov = {(void *)line, n};
        write_lines(out_fd, &iov, 1);
    }
    pthread_mutex_unlock(&out_mu);
    return 1;
}

static void emit(const char *line, size_t n)
{
    for (;;) {
        if (__atomic_load_n(&async_on, __ATOMIC_SEQ_CST) ? ring_put(line, n) : write_sync(line, n))
            return;
    }
}

/* Writes what r holds to fd; returns the bytes written. Writer only (or
 * the stopping thread once the writer is gone). */
static size_t ring_drain(ring_t *r, int fd)
{
    uint64_t t = r->tail, h = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
    if (h == t)
        return 0;
    size_t n = (size_t)(h - t), off = (size_t)(t % r->cap);
    size_t first = r->cap - off < n ? r->cap - off : n;
    struct iovec iov[2] = {{r->buf + off, first}, {r->buf, n - first}};
    write_lines(fd, iov, n > first ? 2 : 1);
    __atomic_store_n(&r->tail, h, __ATOMIC_RELEASE);
    return n;
}

/* The destination the writer uses now, adopting a handed-over one. */
static int writer_fd(void)
{
    pthread_mutex_lock(&out_mu);
    int old = -1;
    if (pending_fd >= 0) {
        old = out_fd;
        out_fd = pending_fd;
        pending_fd = -1;
        mid_line = 0;   /* a cut line stays in the old destination */
    }
    int fd = out_fd;
    pthread_mutex_unlock(&out_mu);
    close_dest(old);
    return fd;
}

/* Frees the rings of exited threads once they are empty (writer only). */
static void reap_dead(void)
{
    pthread_mutex_lock(&reg_mu);
    for (ring_t **pp = &rings; *pp;) {
        ring_t *r = *pp;
        if (__atomic_load_n(&r->dead, __ATOMIC_ACQUIRE) &&
            __atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == r->tail) {
            __atomic_fetch_add(&dropped_other, r->dropped, __ATOMIC_RELAXED);
            *pp = r->next;
            free(r->buf);
            free(r);
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&reg_mu);
}

static size_t drain_all(int fd, int *dead)
{
    size_t n = 0;
    *dead = 0;
    for (ring_t *r = __atomic_load_n(&rings, __ATOMIC_ACQUIRE); r; r = r->next) {
        n += ring_drain(r, fd);
        *dead |= __atomic_load_n(&r->dead, __ATOMIC_ACQUIRE);
    }
    return n;
}

static int any_queued(void)
{
    for (ring_t *r = __atomic_load_n(&rings, __ATOMIC_ACQUIRE); r; r = r->next)
        if (__atomic_load_n(&r->head, __ATOMIC_SEQ_CST) != r->tail)
            return 1;
    return 0;
}

/* After the rings run dry the writer polls them every WRITER_TICK_US for
 * WRITER_IDLE_TICKS before it sleeps until woken: under a steady stream of
 * lines it never sleeps, so no producer ever makes the wake-up syscall. */
#define WRITER_TICK_US 1000
#define WRITER_IDLE_TICKS 20

static void *writer_main(void *arg)
{
    (void)arg;
    int idle = 0;
    for (;;) {
        int fd = writer_fd();
        int stopping = __atomic_load_n(&stop_asked, __ATOMIC_SEQ_CST), dead;
        size_t n = drain_all(fd, &dead);
        if (dead)
            reap_dead();
        if (n) {
            idle = 0;
            continue;
        }
        if (stopping)
            return NULL;
        if (idle++ < WRITER_IDLE_TICKS) {
            struct timespec tick = {0, WRITER_TICK_US * 1000L};
            nanosleep(&tick, NULL);
            continue;
        }
        __atomic_store_n(&sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&out_mu);
        int handover = pending_fd >= 0;
        pthread_mutex_unlock(&out_mu);
        if (!any_queued() && !handover && !__atomic_load_n(&stop_asked, __ATOMIC_SEQ_CST)) {
            struct pollfd pf = {.fd = wake_fd, .events = POLLIN};
            if (poll(&pf, 1, 1000) > 0) {
                uint64_t v;
                ssize_t r = read(wake_fd, &v, sizeof v);
                (void)r;
            }
        }
        __atomic_store_n(&sleeping, 0, __ATOMIC_SEQ_CST);
        idle = 0;
    }
}

int pc_log_start(size_t buffer_bytes)
{
    pthread_mutex_lock(&life_mu);
    int rc = 0;
    pthread_mutex_lock(&out_mu);
    int gone = abandoned;   /* a writer still blocks on the old destination */
    pthread_mutex_unlock(&out_mu);
    if (gone) {
        rc = -1;
    } else if (!__atomic_load_n(&async_on, __ATOMIC_RELAXED)) {
        ring_cap = buffer_bytes < PC_LOG_BUFFER_MIN ? PC_LOG_BUFFER_MIN
                   : buffer_bytes > PC_LOG_BUFFER_MAX ? PC_LOG_BUFFER_MAX : buffer_bytes;
        __atomic_store_n(&stop_asked, 0, __ATOMIC_SEQ_CST);
        if (wake_fd < 0)
            wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pthread_mutex_lock(&out_mu);
        writer_on = 1;
        pthread_mutex_unlock(&out_mu);
        sigset_t all, old;   /* signals are for the threads that take them, never the writer */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int made = wake_fd >= 0 && pthread_create(&writer, NULL, writer_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_mutex_lock(&out_mu);   /* no synchronous write is under way from here on */
        if (made)
            __atomic_store_n(&async_on, 1, __ATOMIC_SEQ_CST);
        else
            writer_on = 0;
        pthread_mutex_unlock(&out_mu);
        rc = made ? 0 : -1;
    }
    pthread_mutex_unlock(&life_mu);
    return rc;
}

/* Waits (at most LATE_WAIT_MS) until no thread is inside ring_put: an
 * append that saw the rings on is then complete. Under reg_mu: a ring
 * registered later belongs to a thread that will see them off. */
#define LATE_WAIT_MS 200

static void wait_appends(void)
{
    int64_t t0 = mono_ms();
    pthread_mutex_lock(&reg_mu);
    for (ring_t *r = rings; r; r = r->next)
        while (__atomic_load_n(&r->busy, __ATOMIC_SEQ_CST) && mono_ms() - t0 < LATE_WAIT_MS)
            sched_yield();
    pthread_mutex_unlock(&reg_mu);
}

void pc_log_stop(unsigned wait_ms)
{
    pthread_mutex_lock(&life_mu);
    if (!__atomic_load_n(&async_on, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&life_mu);
        return;
    }
    __atomic_store_n(&stop_asked, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    ssize_t w = write(wake_fd, &one, sizeof one);
    (void)w;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += wait_ms / 1000;
    dl.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int joined = pthread_timedjoin_np(writer, NULL, &dl) == 0;
    /* Under out_mu from the switch to the end of the last drain: a thread
     * that sees the rings off writes its line after that drain, never
     * interleaved with it. */
    pthread_mutex_lock(&out_mu);
    __atomic_store_n(&async_on, 0, __ATOMIC_SEQ_CST);
    if (joined) {
        writer_on = 0;
        if (pending_fd >= 0) {
            close_dest(out_fd);
            out_fd = pending_fd;
            pending_fd = -1;
            mid_line = 0;
        }
        wait_appends();   /* lines appended while the writer finished, or during the switch */
        int dead;
        drain_all(out_fd, &dead);
    } else {
        abandoned = 1;   /* the destination does not take lines: do not hang the exit on it */
    }
    pthread_mutex_unlock(&out_mu);
    pthread_mutex_unlock(&life_mu);
}

uint64_t pc_log_dropped(void)
{
    uint64_t n = __atomic_load_n(&dropped_other, __ATOMIC_RELAXED) +
                 __atomic_load_n(&write_lost, __ATOMIC_RELAXED);
    pthread_mutex_lock(&reg_mu);
    for (ring_t *r = rings; r; r = r->next)
        n += __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&reg_mu);
    return n;
}
