/* Unit tests: base/metrics counts per thread without loss, interns bounded
 * label names, and renders the Prometheus text format. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/metrics.h"
#include "check.h"

#define THREADS 4
#define PER_THREAD 100000

static void *counter_thread(void *arg)
{
    int attach = *(int *)arg;
    if (attach)
        pc_metrics_thread_attach();
    for (int i = 0; i < PER_THREAD; i++) {
        pc_count(CONN_ACCEPTED);
        pc_count1(CONN_REFUSED, PC_REFUSE_DRAINING);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[THREADS];
    int attach[THREADS] = {1, 1, 0, 0};   /* two with blocks, two on the shared one */
    uint64_t a0 = pc_metrics_read(PC_M_CONN_ACCEPTED);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, counter_thread, &attach[i]);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(pc_metrics_read(PC_M_CONN_ACCEPTED) - a0 == (uint64_t)THREADS * PER_THREAD,
          "every increment of every thread is summed, attached or not");
    CHECK(pc_metrics_read(PC_M_CONN_REFUSED + PC_REFUSE_DRAINING) == (uint64_t)THREADS * PER_THREAD,
          "a labelled counter lands in its own slot");
    CHECK(pc_metrics_read(PC_M_CONN_REFUSED + PC_REFUSE_MAX_CONNECTIONS) == 0,
          "and no other");
}

static void test_intern(void)
{
    unsigned a = pc_metrics_intern(PC_DYN_ROUTE, "api");
    unsigned b = pc_metrics_intern(PC_DYN_ROUTE, "issuance");
    CHECK(a >= 2 && b == a + 1, "names get ids after _none and _other");
    CHECK(pc_metrics_intern(PC_DYN_ROUTE, "api") == a, "a name keeps its id (a reload re-interns)");
    CHECK(pc_metrics_intern(PC_DYN_ROUTE, "_none") == PC_ID_NONE &&
          pc_metrics_intern(PC_DYN_ROUTE, "_other") == PC_ID_OTHER,
          "a configured \"_none\" or \"_other\" is that series, never a second one of the same labels");
    CHECK(pc_metrics_intern(PC_DYN_ROUTE, "") == PC_ID_NONE &&
          pc_metrics_intern(PC_DYN_ROUTE, NULL) == PC_ID_NONE, "no name is _none");
    unsigned last = 0;
    char name[32];
    for (int i = 0; i < PC_DN_CLASS + 5; i++) {
        snprintf(name, sizeof(name), "class%d", i);
        last = pc_metrics_intern(PC_DYN_CLASS, name);
    }
    CHECK(last == PC_ID_OTHER, "past the cap, names count as _other");
    CHECK(pc_metrics_intern(PC_DYN_CLASS, "class0") == 2, "earlier names keep their ids");
}

static void test_render(void)
{
    unsigned api = pc_metrics_intern(PC_DYN_ROUTE, "api");
    unsigned cls = pc_metrics_intern(PC_DYN_CLASS, "class0");
    pc_metrics_thread_attach();
    pc_count3(HTTP_REQUESTS, api, cls, pc_status_class(204));
    pc_count3(HTTP_REQUESTS, api, cls, pc_status_class(503));
    pc_count3(HTTP_REQUESTS, api, cls, pc_status_class(503));
    pc_count1(HTTP_ERRORS, PC_E_OUT_OF_MEMORY);
    pc_observe1(HTTP_TIME, api, 700);      /* 0.7 ms: bucket le=0.001 */
    pc_observe1(HTTP_TIME, api, 20000000); /* 20 s: only +Inf */
    pc_buf_t out = {0};
    pc_metrics_render(&out);
    CHECK(out.p && !out.oom, "renders");
    const char *s = out.p ? out.p : "";
    CHECK(strstr(s, "# TYPE portcullis_http_requests_total counter\n") != NULL, "TYPE line");
    CHECK(strstr(s, "portcullis_http_requests_total{route=\"api\",class=\"class0\",status=\"2xx\"} 1\n"),
          "a labelled series with its value");
    CHECK(strstr(s, "portcullis_http_requests_total{route=\"api\",class=\"class0\",status=\"5xx\"} 2\n"),
          "status classes apart");
    CHECK(!strstr(s, "route=\"_none\",class=\"class0\",status=\"2xx\"}") &&
          !strstr(s, "route=\"api\",class=\"class0\",status=\"4xx\"}"),
          "a series with a configured name appears once counted");
    CHECK(strstr(s, "# TYPE portcullis_upstream_failures_total counter\n"),
          "a family without series still has its HELP and TYPE");
    CHECK(strstr(s, "portcullis_http_errors_total{code=\"out_of_memory\"} 1\n"), "error codes by name");
    CHECK(strstr(s, "portcullis_http_errors_total{code=\"internal\"} 0\n"), "static values all exported");
    CHECK(strstr(s, "portcullis_http_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"} 0\n") &&
          strstr(s, "portcullis_http_request_duration_seconds_bucket{route=\"api\",le=\"0.001\"} 1\n") &&
          strstr(s, "portcullis_http_request_duration_seconds_bucket{route=\"api\",le=\"10\"} 1\n") &&
          strstr(s, "portcullis_http_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 2\n"),
          "histogram buckets are cumulative");
    CHECK(strstr(s, "portcullis_http_request_duration_seconds_sum{route=\"api\"} 20.000700\n") &&
          strstr(s, "portcullis_http_request_duration_seconds_count{route=\"api\"} 2\n"), "sum and count");
    CHECK(strstr(s, "portcullis_connections_accepted_total 400000\n"), "an unlabelled counter");
    pc_buf_free(&out);

    char esc[32];
    pc_metrics_label_esc(esc, sizeof(esc), "a\"b\\c\nd");
    CHECK(strcmp(esc, "a\\\"b\\\\c\\nd") == 0, "label values are escaped");
}

int main(void)
{
    pc_metrics_init();
    test_threads();
    test_intern();
    test_render();
    pc_metrics_shutdown();
    return check_done();
}
