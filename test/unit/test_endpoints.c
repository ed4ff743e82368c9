/* Unit tests: /readyz reasons by process phase and mirror, the TLS failure
 * reasons of verification errors, and the gauges of the exposition. */
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/gateway.h"
#include "../../gateway/metrics.h"
#include "../../tls/tls.h"
#include "check.h"

static int reasons_are(gw_proc_t *p, const char *want)
{
    const char *r[GW_READY_REASONS_MAX];
    size_t n = gw_ready_reasons(p, r, GW_READY_REASONS_MAX);
    char got[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(got, i ? "," : "", sizeof got - strlen(got) - 1);
        strncat(got, r[i], sizeof got - strlen(got) - 1);
    }
    if (strcmp(got, want) != 0)
        printf("# reasons: got \"%s\", want \"%s\"\n", got, want);
    return strcmp(got, want) == 0;
}

static void test_ready(void)
{
    gw_proc_t *p = gw_proc_new();
    CHECK(p != NULL, "process state");
    if (!p)
        return;
    CHECK(reasons_are(p, "starting,revocation_not_loaded"), "a new process is starting, no mirror");
    gw_proc_set_phase(p, GW_PHASE_SERVING);
    CHECK(reasons_are(p, "no_listeners,revocation_not_loaded"), "serving without a generation");
    gw_proc_set_phase(p, GW_PHASE_DRAINING);
    CHECK(reasons_are(p, "draining,revocation_not_loaded"), "draining (no_listeners is implied)");
    const char *one[1];
    CHECK(gw_ready_reasons(p, one, 1) == 2 && strcmp(one[0], "draining") == 0,
          "the count of every reason, only max stored");
    gw_proc_free(p);
}

static void test_fail_reasons(void)
{
    static const struct {
        int xerr, reason;
    } map[] = {
        {X509_V_ERR_CERT_HAS_EXPIRED, PC_TLSF_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, PC_TLSF_NOT_YET_VALID},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, PC_TLSF_UNKNOWN_CA},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, PC_TLSF_UNKNOWN_CA},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, PC_TLSF_UNKNOWN_CA},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, PC_TLSF_UNKNOWN_CA},
        {X509_V_ERR_CERT_UNTRUSTED, PC_TLSF_UNKNOWN_CA},
        {X509_V_ERR_INVALID_PURPOSE, PC_TLSF_BAD_EKU},
        {X509_V_ERR_CERT_REVOKED, PC_TLSF_REVOKED},
        {X509_V_ERR_CERT_CHAIN_TOO_LONG, PC_TLSF_OTHER},
        {X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, PC_TLSF_OTHER},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (tls_fail_reason_of_x509(map[i].xerr) != map[i].reason) {
            printf("# X509 error %d: reason %d, want %d\n", map[i].xerr,
                   tls_fail_reason_of_x509(map[i].xerr), map[i].reason);
            ok = 0;
        }
    CHECK(ok, "verification errors map to their failure reasons");
}

static void test_gauges(void)
{
    gw_proc_t *p = gw_proc_new();
    if (!p)
        return;
    pc_buf_t b = {0};
    gw_metrics_render(p, &b);
    const char *t = b.p ? b.p : "";
    CHECK(!b.oom, "rendered");
    CHECK(strstr(t, "# TYPE portcullis_connections_open gauge\nportcullis_connections_open 0\n") != NULL,
          "connections_open gauge");
    CHECK(strstr(t, "portcullis_build_info{version=\"" PORTCULLIS_VERSION "\",openssl=\"3.") != NULL,
          "build_info labels");
    CHECK(strstr(t, "# TYPE process_open_fds gauge\nprocess_open_fds ") != NULL, "process_open_fds");
    CHECK(strstr(t, "process_start_time_seconds ") != NULL, "process_start_time_seconds");
    CHECK(strstr(t, "portcullis_tls_handshake_failures_total{reason=\"revocation_unknown\"} 0\n") != NULL,
          "the revocation_unknown failure reason is exported");
    CHECK(strstr(t, "portcullis_revocation_entries") == NULL, "no mirror: no revocation gauges");
    pc_buf_free(&b);
    gw_proc_free(p);
}

int main(void)
{
    pc_metrics_init();
    test_ready();
    test_fail_reasons();
    test_gauges();
    pc_metrics_shutdown();
    return check_done();
}
