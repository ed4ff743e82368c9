/* Unit tests: JSON log lines keep every context field whole; typed fields;
 * configuration errors split into fields; the per-thread rings, the writer
 * thread, dropping when full, the stop, the log file and its reopen. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../base/log.h"
#include "../../base/metrics.h"
#include "check.h"

/* One pc_log call in JSON format, its line parsed. */
static json_t *logged(const char *ctx, const char *msg)
{
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    pc_log(PC_INFO, ctx, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char line[4096] = "";
    rewind(f);
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    fclose(f);
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j)
        printf("# not JSON: %s\n", line);
    return j;
}

static const char *field(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

static void test_ctx(void)
{
    json_t *j = logged("w=1 conn=7 peer=127.0.0.1:4242 action=waiting for request", "hello");
    CHECK(j != NULL, "a JSON line");
    CHECK(field(j, "action") && strcmp(field(j, "action"), "waiting for request") == 0,
          "action with spaces kept whole");
    CHECK(field(j, "peer") && strcmp(field(j, "peer"), "127.0.0.1:4242") == 0, "peer");
    CHECK(field(j, "conn") && strcmp(field(j, "conn"), "7") == 0, "conn");
    CHECK(field(j, "msg") && strcmp(field(j, "msg"), "hello") == 0, "msg");
    CHECK(json_object_get(j, "for") == NULL && json_object_get(j, "request") == NULL,
          "no stray members from the words of a value");
    json_decref(j);

    j = logged("action=reading request head w=0", "x");
    CHECK(j && field(j, "action") && strcmp(field(j, "action"), "reading request head") == 0 &&
              field(j, "w") && strcmp(field(j, "w"), "0") == 0,
          "a value with spaces in the middle of the context");
    json_decref(j);

    j = logged("action=say \"hi\" peer=[::1]:9", "quote \" and \\ and \x01");
    CHECK(j && field(j, "action") && strcmp(field(j, "action"), "say \"hi\"") == 0, "escaped value");
    CHECK(j && field(j, "peer") && strcmp(field(j, "peer"), "[::1]:9") == 0, "IPv6 peer");
    CHECK(j && field(j, "msg") && strcmp(field(j, "msg"), "quote \" and \\ and \x01") == 0,
          "escaped message");
    json_decref(j);

    j = logged("component=admin", "m");
    CHECK(j && field(j, "component") && strcmp(field(j, "component"), "admin") == 0, "one field");
    json_decref(j);

    j = logged("", "empty context");
    CHECK(j && field(j, "msg"), "empty context");
    json_decref(j);

    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char ctx[700];
    snprintf(ctx, sizeof(ctx), "k=%s action=last one", big);
    j = logged(ctx, "long");
    CHECK(j != NULL, "a long value still gives a JSON line");
    json_decref(j);
}


/* Reads a whole file into a NUL-terminated buffer (caller frees). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Every line of s parses as a JSON object. */
static int all_json(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    int ok = 1;
    for (char *ln = strtok_r(copy, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(ln, 0, NULL);
        if (!json_is_object(j)) {
            printf("# not a JSON object: %.200s\n", ln);
            ok = 0;
        }
        json_decref(j);
    }
    free(copy);
    return ok;
}

static json_t *built(int json_fmt, void (*fill)(pc_logb_t *), char *text, size_t tn)
{
    pc_log_setup(PC_DEBUG, json_fmt ? PC_LOG_JSON : PC_LOG_TEXT);
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    pc_logb_t b;
    if (pc_logb_begin(&b, PC_INFO, "access"))
        fill(&b);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t n = fread(text, 1, tn - 1, f);
    text[n] = '\0';
    fclose(f);
    pc_log_setup(PC_DEBUG, PC_LOG_JSON);
    return json_fmt ? json_loads(text, 0, NULL) : NULL;
}

static void fill_access(pc_logb_t *b)
{
    pc_logb_str(b, "method", "GET");
    pc_logb_str(b, "path", "/a b\"c");
    pc_logb_int(b, "status", 404);
    pc_logb_uint(b, "response_bytes", 12345678901ull);
    pc_logb_ms(b, "duration_ms", 1.5);
    pc_logb_bool(b, "tls_resumed", 1);
    pc_logb_str(b, "route", NULL);
    pc_logb_strn(b, "cut", "abcdef", 3);
    pc_logb_end(b, NULL);
}

static void test_typed(void)
{
    char text[8192];
    json_t *j = built(1, fill_access, text, sizeof text);
    CHECK(j != NULL, "typed fields: one JSON object");
    CHECK(j && field(j, "event") && strcmp(field(j, "event"), "access") == 0, "event member");
    CHECK(j && field(j, "level") && strcmp(field(j, "level"), "info") == 0, "level member");
    CHECK(j && json_integer_value(json_object_get(j, "status")) == 404 &&
              json_is_integer(json_object_get(j, "status")), "an integer is a JSON number");
    CHECK(j && json_integer_value(json_object_get(j, "response_bytes")) == 12345678901ll, "uint64");
    CHECK(j && json_is_real(json_object_get(j, "duration_ms")) &&
              json_real_value(json_object_get(j, "duration_ms")) == 1.5, "milliseconds as a number");
    CHECK(j && json_is_true(json_object_get(j, "tls_resumed")), "a boolean");
    CHECK(j && json_is_null(json_object_get(j, "route")), "a NULL string is null");
    CHECK(j && field(j, "cut") && strcmp(field(j, "cut"), "abc") == 0, "strn takes n bytes");
    CHECK(j && field(j, "path") && strcmp(field(j, "path"), "/a b\"c") == 0, "escaped string");
    CHECK(j && json_object_get(j, "msg") == NULL, "no message: no msg member");
    regex_t rx;
    regcomp(&rx, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", REG_EXTENDED | REG_NOSUB);
    CHECK(j && field(j, "time") && regexec(&rx, field(j, "time"), 0, NULL, 0) == 0,
          "time: RFC 3339 UTC with milliseconds");
    json_decref(j);

    built(0, fill_access, text, sizeof text);
    CHECK(strstr(text, " info  event=access method=GET path=\"/a b\\\"c\" status=404 "
                       "response_bytes=12345678901 duration_ms=1.500 tls_resumed=true route=- cut=abc\n") != NULL,
          "text: the same fields as key=value, quoted when needed");
    char ts[32];
    snprintf(ts, sizeof ts, "%.24s", text);
    CHECK(regexec(&rx, ts, 0, NULL, 0) == 0, "text: the line starts with the time");
    regfree(&rx);
}

static void fill_many(pc_logb_t *b)
{
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 40; i++)
        pc_logb_str(b, "field_with_a_long_name", big);
    pc_logb_end(b, "%s %s %s %s", big, big, big, big);
}

static void test_limits(void)
{
    char text[8192];
    json_t *j = built(1, fill_many, text, sizeof text);
    CHECK(j != NULL, "too many fields: still one JSON object");
    CHECK(strlen(text) <= PC_LOG_LINE_MAX && text[strlen(text) - 1] == '\n', "cut to the line bound");
    json_decref(j);
}

static void test_split(void)
{
    size_t fl, kl;
    unsigned long line, col;
    const char *key, *msg;
    const char *e = "/etc/p c.yaml:12:5: routes[0].jwt.issuer: expected a string, got 1: x";
    CHECK(pc_log_split_error(e, &fl, &line, &col, &key, &kl, &msg) == 1 && fl == 13 &&
              strncmp(e, "/etc/p c.yaml", fl) == 0 && line == 12 && col == 5 && kl == 20 &&
              strncmp(key, "routes[0].jwt.issuer", kl) == 0 &&
              strcmp(msg, "expected a string, got 1: x") == 0, "file:line:col: key: message");
    e = "a:b.yaml:3:1: mapping values are not allowed here";
    CHECK(pc_log_split_error(e, &fl, &line, &col, &key, &kl, &msg) == 1 && fl == 8 && line == 3 &&
              col == 1 && kl == 0 && strcmp(msg, "mapping values are not allowed here") == 0,
          "no key path; a ':' in the file name");
    CHECK(pc_log_split_error("cfg.yaml: cannot read \"x\": No such file", &fl, &line, &col, &key, &kl, &msg) == 0,
          "no position: not split");
    CHECK(pc_log_split_error(":1:2: k: m", &fl, &line, &col, &key, &kl, &msg) == 0, "no file name");
    CHECK(pc_log_split_error("f:1:2 k: m", &fl, &line, &col, &key, &kl, &msg) == 0, "no ': ' after the column");
    CHECK(pc_log_split_error("f:99999999999:2: k: m", &fl, &line, &col, &key, &kl, &msg) == 0,
          "an overlong line number is not a position");
    CHECK(pc_log_split_error("", &fl, &line, &col, &key, &kl, &msg) == 0, "empty");

    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    pc_log_config_error(PC_ERR, "reload: ", "c.yaml:4:9: logging.buffer: expected a size");
    dup2(saved, STDERR_FILENO);
    close(saved);
    char line_[1024] = "";
    rewind(f);
    line_[fread(line_, 1, sizeof line_ - 1, f)] = '\0';
    fclose(f);
    json_t *j = json_loads(line_, 0, NULL);
    CHECK(j && field(j, "event") && strcmp(field(j, "event"), "config_error") == 0 && field(j, "file") &&
              strcmp(field(j, "file"), "c.yaml") == 0 && json_integer_value(json_object_get(j, "line")) == 4 &&
              json_integer_value(json_object_get(j, "column")) == 9 && field(j, "key") &&
              strcmp(field(j, "key"), "logging.buffer") == 0 && field(j, "msg") &&
              strcmp(field(j, "msg"), "reload: expected a size") == 0 && field(j, "level") &&
              strcmp(field(j, "level"), "error") == 0,
          "a configuration error is one JSON object with its position as fields");
    json_decref(j);
}

/* ---- the rings and the writer ---- */

#define NTHREADS 4
#define NLINES 500

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < NLINES; i++)
        pc_log_ev(PC_INFO, "test_line", NULL, "t=%d i=%d", id, i);
    return NULL;
}

/* Every thread's lines arrive, whole, in the order that thread wrote them. */
static int ordered(const char *s, int nthreads, int nlines)
{
    int next[NTHREADS] = {0};
    char *copy = strdup(s), *save = NULL;
    int ok = 1;
    for (char *ln = strtok_r(copy, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(ln, 0, NULL);
        int t, i;
        const char *m = field(j, "msg");
        if (m && sscanf(m, "t=%d i=%d", &t, &i) == 2 && t >= 0 && t < nthreads) {
            if (i != next[t])
                ok = 0;
            next[t] = i + 1;
        }
        json_decref(j);
    }
    for (int t = 0; t < nthreads; t++)
        if (next[t] != nlines)
            ok = 0;
    free(copy);
    return ok;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void test_writer(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/a.log", dir);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "log file opened");
    CHECK(pc_log_start(1024 * 1024) == 0, "writer started");
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, producer, (void *)(intptr_t)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    int64_t t0 = now_ms();
    pc_log_stop(5000);
    CHECK(now_ms() - t0 < 2000, "the stop is prompt once the producing threads have exited");
    char *s = slurp(path);
    CHECK(count_lines(s) == NTHREADS * NLINES, "every line written once the writer stopped");
    CHECK(all_json(s), "every line a JSON object");
    CHECK(ordered(s, NTHREADS, NLINES), "each thread's lines whole and in order");
    CHECK(pc_log_dropped() == 0, "nothing dropped with room enough");
    free(s);

    /* the file is reopened by its name after a rename (logrotate) */
    char rotated[600];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    CHECK(pc_log_start(64 * 1024) == 0, "writer started again");
    pc_log_ev(PC_INFO, "before", NULL, "before rotation");
    struct timespec ms50 = {0, 50 * 1000 * 1000};
    nanosleep(&ms50, NULL);
    rename(path, rotated);
    CHECK(pc_log_reopen(err, sizeof err) == 0, "reopened");
    pc_log_ev(PC_INFO, "after", NULL, "after rotation");
    pc_log_stop(5000);
    char *old = slurp(rotated), *cur = slurp(path);
    CHECK(strstr(old, "before rotation") && !strstr(old, "after rotation"), "the renamed file has the old lines");
    CHECK(strstr(cur, "after rotation") && !strstr(cur, "before rotation") && count_lines(cur) == 1,
          "the new file has the lines after the reopen");
    free(old);
    free(cur);

    /* synchronous (no writer): the same */
    rename(path, rotated);
    CHECK(pc_log_reopen(err, sizeof err) == 0, "reopened without a writer");
    pc_log(PC_INFO, NULL, "sync line");
    cur = slurp(path);
    CHECK(strstr(cur, "sync line") != NULL && count_lines(cur) == 1, "a synchronous line in the new file");
    free(cur);
    CHECK(pc_log_file(path, err, sizeof err) == 1, "the same file again: nothing changes, 1 says so");
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.log", dir);
    CHECK(pc_log_file(bad, err, sizeof err) == -1 && strstr(err, "cannot open log file") &&
              strstr(err, "No such file"), "an unopenable file: an error, the old one kept");
    pc_log(PC_INFO, NULL, "still here");
    cur = slurp(path);
    CHECK(strstr(cur, "still here") != NULL, "lines still go to the old file");
    free(cur);
}

static void *reader(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    size_t *total = malloc(sizeof *total);
    *total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            *total += buf[i] == '\n';
    return total;
}

/* A destination nobody reads: lines are dropped and counted, never waited
 * for; once it is read again, nothing kept is lost. */
static void test_stalled(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    char path[64], err[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "the pipe as the log file");
    close(p[1]);
    uint64_t d0 = pc_log_dropped(), m0 = pc_metrics_read(PC_M_LOG_DROPPED);
    CHECK(pc_log_start(16 * 1024) == 0, "writer started, small rings");
    int64_t t0 = now_ms();
    int total = 20000;
    for (int i = 0; i < total; i++)
        pc_log_ev(PC_INFO, "flood", NULL, "line %d of a flood nobody reads yet", i);
    int64_t took = now_ms() - t0;
    uint64_t dropped = pc_log_dropped() - d0;
    printf("# %d lines in %lld ms, %llu dropped\n", total, (long long)took, (unsigned long long)dropped);
    CHECK(took < 2000, "logging into a stalled destination never blocks");
    CHECK(dropped > 0, "lines dropped when the ring is full");
    CHECK(pc_metrics_read(PC_M_LOG_DROPPED) - m0 == dropped, "drops counted in LOG_DROPPED");
    pthread_t rt;
    pthread_create(&rt, NULL, reader, &p[0]);
    pc_log_stop(5000);
    CHECK(pc_log_file(NULL, err, sizeof err) == 0, "back to stderr");   /* closes the pipe */
    CHECK(pc_log_reopen(err, sizeof err) == 1, "stderr: nothing to reopen");
    size_t *got;
    pthread_join(rt, (void **)&got);
    CHECK(*got + dropped == (size_t)total, "every line either written or counted as dropped");
    free(got);
    close(p[0]);

    /* a stop with the destination still stalled gives up after its wait */
    CHECK(pipe(p) == 0, "pipe");
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "a pipe again");
    close(p[1]);
    CHECK(pc_log_start(16 * 1024) == 0, "writer started");
    for (int i = 0; i < total; i++)
        pc_log_ev(PC_INFO, "flood", NULL, "line %d", i);
    t0 = now_ms();
    pc_log_stop(300);
    took = now_ms() - t0;
    CHECK(took >= 250 && took < 1500, "the stop waits its bound for a stalled destination, no more");
    t0 = now_ms();
    d0 = pc_log_dropped();
    m0 = pc_metrics_read(PC_M_LOG_DROPPED);
    for (int i = 0; i < 1000; i++)
        pc_log(PC_INFO, NULL, "after an abandoned stop");
    CHECK(now_ms() - t0 < 1000, "lines after an abandoned stop do not hang the exit");
    CHECK(pc_log_dropped() - d0 == 1000 && pc_metrics_read(PC_M_LOG_DROPPED) - m0 == 1000,
          "lines discarded after an abandoned stop are counted as dropped");
    CHECK(pc_log_start(16 * 1024) == -1, "no second writer while the first still blocks");
}


/* ---- failed writes ---- */

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void set_fsize(rlim_t cur)
{
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = cur;
    setrlimit(RLIMIT_FSIZE, &rl);
}

/* Lines of s (split at '\n'; a last one without '\n' too) into v (at most
 * max); returns how many. s is modified. */
static int split_lines(char *s, char **v, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *ln = strtok_r(s, "\n", &save); ln && n < max; ln = strtok_r(NULL, "\n", &save))
        v[n++] = ln;
    return n;
}

static int is_msg(const char *ln, const char *msg)
{
    json_t *j = json_loads(ln, 0, NULL);
    int ok = j && field(j, "msg") && strcmp(field(j, "msg"), msg) == 0;
    json_decref(j);
    return ok;
}

/* The lost-lines report in ln: its lines_lost, or -1 when ln is not one. */
static long long report_in(const char *ln, const char *error)
{
    json_t *j = json_loads(ln, 0, NULL);
    long long n = -1;
    if (j && field(j, "event") && strcmp(field(j, "event"), "log_write_failed") == 0 &&
        field(j, "error") && strcmp(field(j, "error"), error) == 0 && field(j, "level") &&
        strcmp(field(j, "level"), "error") == 0)
        n = json_integer_value(json_object_get(j, "lines_lost"));
    json_decref(j);
    return n;
}

#define PAD "................................................................................"

/* A file that takes 1.5 more lines (RLIMIT_FSIZE: a short write, then
 * EFBIG): the lines not written whole are counted as dropped, the cut one
 * is ended before the next line, and one line reports the loss. */
static void test_cut_line(const char *dir, int async)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/cut-%d.log", dir, async);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "a fresh log file");
    if (async)
        CHECK(pc_log_start(64 * 1024) == 0, "writer started");
    pc_log_ev(PC_INFO, "w", NULL, "line F %s", PAD);
    if (async)
        pc_log_stop(5000), pc_log_start(64 * 1024);   /* written */
    long l = file_size(path);   /* every line has this length: same fields, fixed-width time */
    uint64_t d0 = pc_log_dropped(), m0 = pc_metrics_read(PC_M_LOG_DROPPED);
    set_fsize((rlim_t)(2 * l + l / 2));
    for (int i = 0; i < 4; i++)
        pc_log_ev(PC_INFO, "w", NULL, "line %d %s", i, PAD);
    if (async)
        pc_log_stop(5000);
    CHECK(file_size(path) == 2 * l + l / 2, "the file holds what fitted, a line cut");
    set_fsize(RLIM_INFINITY);
    if (async)
        pc_log_start(64 * 1024);
    pc_log_ev(PC_INFO, "w", NULL, "after");
    if (async)
        pc_log_stop(5000);
    CHECK(pc_log_dropped() - d0 == 3, "the three lines not written whole are counted as lost");
    CHECK(pc_metrics_read(PC_M_LOG_DROPPED) - m0 == 3, "and in LOG_DROPPED");
    char *s = slurp(path), *v[16];
    int n = split_lines(s, v, 16);
    char want[256];
    snprintf(want, sizeof want, "line 0 %s", PAD);
    int cut = n >= 3 && strncmp(v[2], "{\"time\":", 8) == 0 && !json_loads(v[2], 0, NULL) &&
              (long)strlen(v[2]) == l / 2;
    CHECK(n >= 4 && is_msg(v[0], "line F " PAD) && is_msg(v[1], want) && cut && is_msg(v[3], "after"),
          "the cut line ends where the next line starts: that one parses on its own line");
    if (!async)
        CHECK(n == 5 && report_in(v[4], "File too large") == 3,
              "once writing works again one line says how many were lost and why");
    else
        CHECK(n == 4, "no second report within the minute");
    free(s);
}

/* Destinations that take nothing: /dev/full (ENOSPC), a pipe nobody will
 * ever read (EPIPE). Every line is counted as lost, nothing blocks. */
static void test_refused(const char *dir)
{
    char err[256], path[600];
    uint64_t d0 = pc_log_dropped();
    CHECK(pc_log_file("/dev/full", err, sizeof err) == 0, "/dev/full as the log file");
    CHECK(pc_log_start(64 * 1024) == 0, "writer started");
    for (int i = 0; i < 50; i++)
        pc_log_ev(PC_INFO, "w", NULL, "to a full disk %d", i);
    pc_log_stop(5000);
    for (int i = 0; i < 10; i++)
        pc_log_ev(PC_INFO, "w", NULL, "synchronously to a full disk %d", i);
    CHECK(pc_log_dropped() - d0 == 60, "ENOSPC: every line counted as lost");

    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "a pipe as the log file");
    close(p[1]);
    close(p[0]);   /* nobody reads: EPIPE */
    d0 = pc_log_dropped();
    CHECK(pc_log_start(64 * 1024) == 0, "writer started");
    for (int i = 0; i < 50; i++)
        pc_log_ev(PC_INFO, "w", NULL, "to a closed pipe %d", i);
    pc_log_stop(5000);
    pc_log_ev(PC_INFO, "w", NULL, "synchronously to a closed pipe");
    CHECK(pc_log_dropped() - d0 == 51, "EPIPE: every line counted as lost");
    snprintf(path, sizeof path, "%s/refused.log", dir);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "a file again");
    pc_log_ev(PC_INFO, "w", NULL, "written again");
    char *s = slurp(path);
    CHECK(strcmp(s, "") != 0 && is_msg(strtok(s, "\n"), "written again") && count_lines(s) <= 2,
          "lines are written again, the first one whole");
    free(s);
}

/* ---- the stop while threads log ---- */

#define RACERS 3

typedef struct {
    int id;
    int run;
    long n;
} racer_t;

static void *racer(void *arg)
{
    racer_t *r = arg;
    struct timespec pause = {0, 20 * 1000};
    while (__atomic_load_n(&r->run, __ATOMIC_RELAXED)) {
        for (int k = 0; k < 8; k++)
            pc_log_ev(PC_INFO, "race", NULL, "t=%d i=%ld", r->id, r->n++);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* Threads keep logging while the writer starts and stops, again and
 * again: each thread's lines stay whole and in order (a line appended
 * during the stop is written before the thread's next, synchronous, one),
 * and every line is written or counted as dropped. */
static void test_stop_race(const char *dir)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/race.log", dir);
    CHECK(pc_log_file(path, err, sizeof err) == 0, "a fresh log file");
    uint64_t d0 = pc_log_dropped();
    racer_t rs[RACERS];
    pthread_t th[RACERS];
    for (int t = 0; t < RACERS; t++) {
        rs[t] = (racer_t){.id = t, .run = 1};
        pthread_create(&th[t], NULL, racer, &rs[t]);
    }
    for (int k = 0; k < 400; k++) {
        pc_log_start(256 * 1024);
        struct timespec d = {0, 200 * 1000};
        nanosleep(&d, NULL);
        pc_log_stop(5000);
        nanosleep(&d, NULL);
    }
    long total = 0;
    for (int t = 0; t < RACERS; t++) {
        __atomic_store_n(&rs[t].run, 0, __ATOMIC_RELAXED);
        pthread_join(th[t], NULL);
        total += rs[t].n;
    }
    uint64_t dropped = pc_log_dropped() - d0;
    char *s = slurp(path);
    long next[RACERS] = {0}, lines = 0, bad = 0, order = 0;
    char *save = NULL;
    for (char *ln = strtok_r(s, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(ln, 0, NULL);
        int t;
        long i;
        const char *m = field(j, "msg");
        if (m && sscanf(m, "t=%d i=%ld", &t, &i) == 2 && t >= 0 && t < RACERS) {
            lines++;
            order += i < next[t];
            next[t] = i + 1;
        } else {
            bad++;
        }
        json_decref(j);
    }
    free(s);
    printf("# %ld lines logged, %ld written, %llu dropped, %ld out of order, %ld not whole\n", total, lines,
           (unsigned long long)dropped, order, bad);
    CHECK(bad == 0, "every line whole");
    CHECK(order == 0, "each thread's lines in the order it logged them, across every stop");
    CHECK(lines + (long)dropped == total, "every line written or counted as dropped");
}

static void test_more(void)
{
    test_typed();
    test_limits();
    test_split();
    char dir[] = "/tmp/pc-test-log-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    test_writer(dir);
    signal(SIGXFSZ, SIG_IGN);   /* a write past RLIMIT_FSIZE fails with EFBIG */
    signal(SIGPIPE, SIG_IGN);
    test_cut_line(dir, 0);
    test_cut_line(dir, 1);
    test_refused(dir);
    test_stop_race(dir);
    test_stalled();   /* last: leaves the log abandoned */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

int main(void)
{
    pc_metrics_init();
    pc_log_setup(PC_DEBUG, PC_LOG_JSON);
    test_ctx();
    test_more();
    return check_done();
}
