/* fuzz_log: log lines built from untrusted text, and the configuration
 * error splitter (pc_log_split_error).
 *
 * Values that reach a log line come from clients (a path, a device id, a
 * message quoting a header) and from files (a configuration error). The
 * target builds one typed-field line and one context line from the input,
 * in JSON or text, writes them to a file, and checks the contract: each is
 * exactly one line (one '\n', at the end) of at most PC_LOG_LINE_MAX bytes;
 * in JSON each line is one object jansson parses (valid UTF-8, every
 * control byte escaped, a cut line still closed), with the fields given.
 * pc_log_split_error's spans lie inside its input, its file name is not
 * empty and is followed by ":<line>:<col>: ", and the message runs to the
 * end of the input.
 * Input layout: byte 0 bit 0 the format (1 JSON); the rest split at NUL
 * bytes into a value, a second value, a context string and a message.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>

#include "fuzz.h"

static char log_path[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    snprintf(log_path, sizeof log_path, "%s/log", fuzz_dir());
    if (pc_log_file(log_path, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_log: %s\n", err);
        abort();
    }
    return 0;
}

/* The i-th NUL-separated part of s[0..n) (empty when missing). */
static char *part(const uint8_t *s, size_t n, int i)
{
    size_t a = 0;
    for (int k = 0; k < i && a <= n; k++) {
        const uint8_t *z = a < n ? memchr(s + a, 0, n - a) : NULL;
        a = z ? (size_t)(z - s) + 1 : n + 1;
    }
    if (a > n)
        return fuzz_strndup(s, 0);
    const uint8_t *z = memchr(s + a, 0, n - a);
    return fuzz_strndup(s + a, z ? (size_t)(z - (s + a)) : n - a);
}

static void check_split(const char *s)
{
    size_t fl = 0, kl = 0;
    unsigned long line = 0, col = 0;
    const char *key = NULL, *msg = NULL;
    if (!pc_log_split_error(s, &fl, &line, &col, &key, &kl, &msg))
        return;
    size_t n = strlen(s);
    FUZZ_ASSERT(fl > 0 && fl < n && s[fl] == ':', "the file name ends at a ':'");
    char pos[48];
    int pl = snprintf(pos, sizeof pos, ":%lu:%lu: ", line, col);
    FUZZ_ASSERT(pl > 0 && strchr(s + fl + 1, ':') != NULL, "line and column follow the file");
    FUZZ_ASSERT(key >= s && key <= s + n && kl <= (size_t)(s + n - key), "the key lies inside");
    FUZZ_ASSERT(msg >= s && msg <= s + n && msg + strlen(msg) == s + n,
                "the message runs to the end of the input");
    FUZZ_ASSERT(!kl || (key[kl] == ':' && key[kl + 1] == ' ' && msg == key + kl + 2),
                "a key path ends at \": \", and the message follows it");
    FUZZ_ASSERT(!memchr(key, ' ', kl), "a key path has no space");
}

/* Reads the log file, checks each line, and empties it. */
static void check_lines(int json, int want)
{
    FILE *f = fopen(log_path, "rb");
    FUZZ_ASSERT(f != NULL, "the log file opens");
    static char buf[4 * PC_LOG_LINE_MAX];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    FUZZ_ASSERT(truncate(log_path, 0) == 0, "the log file empties");
    int lines = 0;
    for (char *p = buf; p < buf + n;) {
        char *e = memchr(p, '\n', (size_t)(buf + n - p));
        FUZZ_ASSERT(e != NULL, "every line ends in a newline");
        FUZZ_ASSERT((size_t)(e - p) + 1 <= PC_LOG_LINE_MAX, "a line is at most PC_LOG_LINE_MAX");
        for (const char *q = p; q < e; q++)
            FUZZ_ASSERT((unsigned char)*q >= 0x20 && *q != 0x7f, "no control byte inside a line");
        if (json) {
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(e - p), 0, &je);
            if (!o)
                fprintf(stderr, "fuzz_log: %s: %.*s\n", je.text, (int)(e - p), p);
            FUZZ_ASSERT(o && json_is_object(o), "a JSON line is one object");
            FUZZ_ASSERT(json_is_string(json_object_get(o, "time")) &&
                        json_is_string(json_object_get(o, "level")) &&
                        json_is_string(json_object_get(o, "event")), "time, level and event");
            json_decref(o);
        }
        lines++;
        p = e + 1;
    }
    if (lines != want)
        fprintf(stderr, "fuzz_log: %d lines, want %d: %s\n", lines, want, buf);
    FUZZ_ASSERT(lines == want, "one line per event");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int json = data[0] & 1;
    pc_log_setup(PC_INFO, json ? PC_LOG_JSON : PC_LOG_TEXT);
    char *v1 = part(data + 1, size - 1, 0), *v2 = part(data + 1, size - 1, 1);
    char *ctx = part(data + 1, size - 1, 2), *msg = part(data + 1, size - 1, 3);

    pc_logb_t b;
    if (pc_logb_begin(&b, PC_INFO, "access")) {
        pc_logb_str(&b, "path", v1);
        pc_logb_strn(&b, "device_id", v2, strlen(v2));
        pc_logb_int(&b, "status", (long long)size - 100);
        pc_logb_ms(&b, "duration_ms", (double)size / 7.0);
        pc_logb_bool(&b, "tls_resumed", (int)(size & 2));
        pc_logb_str(&b, "error", NULL);
        pc_logb_ctx(&b, ctx);
        pc_logb_end(&b, "%s", msg);
    }
    pc_log(PC_INFO, ctx, "%s", v1);
    pc_log_config_error(PC_ERR, NULL, msg);
    check_lines(json, 3);
    check_split(msg);
    check_split(v1);
    free(v1);
    free(v2);
    free(ctx);
    free(msg);
    return 0;
}
