/* report: statistics bookkeeping and the text / JSON report. */
#include "stats.h"

#include <string.h>

static const char *const err_names[ERR_KINDS] = {
    "connect", "handshake", "tls_alert", "http_status", "timeout", "closed", "protocol",
};

const char *stats_err_name(int kind)
{
    return kind >= 0 && kind < ERR_KINDS ? err_names[kind] : "?";
}

void stats_init(bench_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    hist_init(&s->lat);
}

void stats_error(bench_stats_t *s, int kind, const char *msg)
{
    s->err[kind]++;
    if (!s->sample[kind][0] && msg && *msg)
        snprintf(s->sample[kind], STATS_SAMPLE_LEN, "%s", msg);
}

static void alert_add(bench_stats_t *s, const char *desc, uint64_t n)
{
    for (unsigned i = 0; i < s->nalerts; i++)
        if (strcmp(s->alerts[i].desc, desc) == 0) {
            s->alerts[i].n += n;
            return;
        }
    if (s->nalerts < STATS_MAX_ALERTS) {
        s->alerts[s->nalerts].desc = desc;
        s->alerts[s->nalerts].n = n;
        s->nalerts++;
    }
}

void stats_alert(bench_stats_t *s, const char *desc)
{
    alert_add(s, desc, 1);
}

void stats_merge(bench_stats_t *d, const bench_stats_t *s)
{
    d->requests += s->requests;
    d->hs_full += s->hs_full;
    d->hs_resumed += s->hs_resumed;
    d->bytes_read += s->bytes_read;
    d->bytes_written += s->bytes_written;
    for (int k = 0; k < ERR_KINDS; k++) {
        d->err[k] += s->err[k];
        if (!d->sample[k][0])
            memcpy(d->sample[k], s->sample[k], STATS_SAMPLE_LEN);
    }
    for (int i = 0; i < 600; i++)
        d->status[i] += s->status[i];
    for (unsigned i = 0; i < s->nalerts; i++)
        alert_add(d, s->alerts[i].desc, s->alerts[i].n);
    d->idle_up += s->idle_up;
    if (s->elapsed_ns > d->elapsed_ns)
        d->elapsed_ns = s->elapsed_ns;
    hist_merge(&d->lat, &s->lat);
}

uint64_t stats_errors_total(const bench_stats_t *s)
{
    uint64_t n = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        n += s->err[k];
    return n;
}

static double secs(const bench_stats_t *s)
{
    return (double)s->elapsed_ns / 1e9;
}

static double per_sec(uint64_t n, const bench_stats_t *s)
{
    double d = secs(s);
    return d > 0 ? (double)n / d : 0.0;
}

static double resumed_pct(const bench_stats_t *s)
{
    uint64_t hs = s->hs_full + s->hs_resumed;
    return hs ? 100.0 * (double)s->hs_resumed / (double)hs : 0.0;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void human_bytes(char *buf, size_t n, uint64_t b)
{
    if (b >= 1024ULL * 1024 * 1024)
        snprintf(buf, n, "%.2f GiB", (double)b / (1024.0 * 1024 * 1024));
    else if (b >= 1024ULL * 1024)
        snprintf(buf, n, "%.2f MiB", (double)b / (1024.0 * 1024));
    else if (b >= 1024)
        snprintf(buf, n, "%.2f KiB", (double)b / 1024.0);
    else
        snprintf(buf, n, "%llu B", (unsigned long long)b);
}

void report_text(FILE *out, const bench_opts_t *o, const bench_stats_t *s)
{
    char rb[32], wb[32];
    fprintf(out, "portcullis-bench: %s mode", bench_mode_name(o->mode));
    if (o->mode == MODE_RESUME)
        fprintf(out, " (%s)", bench_resume_kind_name(o->resume_kind));
    else
        fprintf(out, " (TLS <= 1.%d)", o->tls_max == 13 ? 3 : 2);
    fprintf(out, ", %u connection%s, %u thread%s", o->connections, o->connections == 1 ? "" : "s",
            o->threads, o->threads == 1 ? "" : "s");
    if (o->rate > 0)
        fprintf(out, o->mode == MODE_IDLE ? ", connections opened at %.1f/s" : ", open loop at %.1f req/s",
                o->rate);
    fprintf(out, ", https://%s%s\n", o->url.authority, o->url.path);
    fprintf(out, "  duration     %.3f s\n", secs(s));
    if (o->mode != MODE_IDLE)
        fprintf(out, "  requests     %llu (%.1f/s)\n", (unsigned long long)s->requests,
                per_sec(s->requests, s));
    else
        fprintf(out, "  idle up      %llu of %u connections\n", (unsigned long long)s->idle_up,
                o->connections);
    fprintf(out, "  handshakes   %llu full, %llu resumed (%.1f%% resumed), %.1f/s full, %.1f/s resumed\n",
            (unsigned long long)s->hs_full, (unsigned long long)s->hs_resumed, resumed_pct(s),
            per_sec(s->hs_full, s), per_sec(s->hs_resumed, s));
    human_bytes(rb, sizeof(rb), s->bytes_read);
    human_bytes(wb, sizeof(wb), s->bytes_written);
    fprintf(out, "  bytes        %s read, %s written\n", rb, wb);
    fprintf(out, "  errors       %llu\n", (unsigned long long)stats_errors_total(s));
    for (int k = 0; k < ERR_KINDS; k++) {
        if (!s->err[k])
            continue;
        fprintf(out, "    %-12s %llu", err_names[k], (unsigned long long)s->err[k]);
        if (k != ERR_HTTP_STATUS && s->sample[k][0])
            fprintf(out, "  (e.g. %s)", s->sample[k]);
        fputc('\n', out);
        if (k == ERR_HTTP_STATUS)
            for (int c = 0; c < 600; c++)
                if (s->status[c])
                    fprintf(out, "      %d: %llu\n", c, (unsigned long long)s->status[c]);
        if (k == ERR_TLS_ALERT)
            for (unsigned i = 0; i < s->nalerts; i++)
                fprintf(out, "      %s: %llu\n", s->alerts[i].desc,
                        (unsigned long long)s->alerts[i].n);
    }
    if (s->lat.count) {
        const hist_t *h = &s->lat;
        fprintf(out, "  latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f, min %.3f)\n",
                ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)), ms(hist_percentile(h, 99)),
                ms(hist_percentile(h, 99.9)), ms(h->max), hist_mean(h) / 1000.0, ms(h->min));
        if (o->rate > 0)
            fprintf(out, "               (measured from each request's intended send time)\n");
    }
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void report_json(FILE *out, const bench_opts_t *o, const bench_stats_t *s)
{
    const hist_t *h = &s->lat;
    fprintf(out, "{\"mode\":\"%s\"", bench_mode_name(o->mode));
    if (o->mode == MODE_RESUME)
        fprintf(out, ",\"resume_kind\":\"%s\"", bench_resume_kind_name(o->resume_kind));
    fprintf(out, ",\"tls_max\":\"1.%d\"", o->tls_max == 13 ? 3 : 2);
    fprintf(out, ",\"connections\":%u,\"threads\":%u", o->connections, o->threads);
    if (o->rate > 0)
        fprintf(out, ",\"rate\":%.3f", o->rate);
    fprintf(out, ",\"duration_s\":%.6f,\"requests\":%llu,\"rps\":%.3f", secs(s),
            (unsigned long long)s->requests, per_sec(s->requests, s));
    fprintf(out, ",\"handshakes_full\":%llu,\"handshakes_resumed\":%llu",
            (unsigned long long)s->hs_full, (unsigned long long)s->hs_resumed);
    fprintf(out, ",\"handshakes_full_per_s\":%.3f,\"handshakes_resumed_per_s\":%.3f",
            per_sec(s->hs_full, s), per_sec(s->hs_resumed, s));
    fprintf(out, ",\"resumed_pct\":%.3f", resumed_pct(s));
    fprintf(out, ",\"bytes_read\":%llu,\"bytes_written\":%llu", (unsigned long long)s->bytes_read,
            (unsigned long long)s->bytes_written);
    fprintf(out, ",\"errors_total\":%llu,\"errors\":{", (unsigned long long)stats_errors_total(s));
    for (int k = 0; k < ERR_KINDS; k++) {
        if (k)
            fputc(',', out);
        if (k == ERR_HTTP_STATUS) {
            fprintf(out, "\"http_status\":{");
            int first = 1;
            for (int c = 0; c < 600; c++)
                if (s->status[c]) {
                    fprintf(out, "%s\"%d\":%llu", first ? "" : ",", c,
                            (unsigned long long)s->status[c]);
                    first = 0;
                }
            fputc('}', out);
        } else {
            fprintf(out, "\"%s\":%llu", err_names[k], (unsigned long long)s->err[k]);
        }
    }
    fprintf(out, "},\"tls_alerts\":{");
    for (unsigned i = 0; i < s->nalerts; i++) {
        if (i)
            fputc(',', out);
        json_str(out, s->alerts[i].desc);
        fprintf(out, ":%llu", (unsigned long long)s->alerts[i].n);
    }
    fprintf(out, "},\"error_samples\":{");
    int first = 1;
    for (int k = 0; k < ERR_KINDS; k++) {
        if (!s->sample[k][0])
            continue;
        fprintf(out, "%s\"%s\":", first ? "" : ",", err_names[k]);
        json_str(out, s->sample[k]);
        first = 0;
    }
    fprintf(out, "},\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
                 "\"max\":%.3f,\"min\":%.3f,\"mean\":%.3f,\"count\":%llu}",
            ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)), ms(hist_percentile(h, 99)),
            ms(hist_percentile(h, 99.9)), ms(h->max), h->count ? ms(h->min) : 0.0,
            hist_mean(h) / 1000.0, (unsigned long long)h->count);
    if (o->mode == MODE_IDLE)
        fprintf(out, ",\"idle_connections_up\":%llu", (unsigned long long)s->idle_up);
    fprintf(out, "}\n");
}
