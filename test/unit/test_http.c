/* Unit tests: head collection and header rewriting, both directions. */
#include <stdlib.h>
#include <string.h>

#include "../../upstream/http.h"
#include "check.h"
#include "hdrs_util.h"

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        c++;
    return c;
}

int main(void)
{
    ups_hdrs_t h;
    CHECK(ups_hdrs_init(&h, 4096, 64) == 0, "init");

    /* pieces split across reads are joined */
    ups_hdrs_first(&h, "/api/", 5);
    ups_hdrs_first(&h, "x?y=1", 5);
    ups_hdrs_field(&h, "Ho", 2);
    ups_hdrs_field(&h, "st", 2);
    ups_hdrs_value(&h, "  example.com", 13);
    ups_hdrs_value(&h, "  ", 2);
    add(&h, "X-Client-Cert-Serial", "deadbeef");
    add(&h, "x-device-id", "spoofed-1");
    add(&h, "X-DEVICE-ID", "spoofed-2");
    add(&h, "X-Client-Cert-Class", "\tbootstrap ");
    add(&h, "Connection", "keep-alive, X-Secret-Hop");
    add(&h, "X-Secret-Hop", "1");
    add(&h, "Keep-Alive", "timeout=5");
    add(&h, "TE", "trailers");
    add(&h, "Upgrade", "websocket");
    add(&h, "Proxy-Authorization", "Basic eA==");
    add(&h, "X-Forwarded-For", "6.6.6.6");
    add(&h, "X-Forwarded-Proto", "http");
    add(&h, "X-Request-Id", "client-id");
    add(&h, "Authorization", "Bearer tok");
    add(&h, "Content-Length", "5");
    add(&h, "Expect", "100-continue");
    add(&h, "X-App", "kept");
    ups_hdrs_finish(&h);
    CHECK(h.err == 0, "no error");
    CHECK(h.first.len == 10 && memcmp(ups_str(&h, h.first), "/api/x?y=1", 10) == 0, "target joined");
    int host = ups_hdrs_find(&h, "HOST");
    CHECK(host == 0 && h.h[0].value.len == 11, "value trimmed, lookup case-insensitive");
    CHECK(ups_hdrs_count(&h, "x-device-id") == 2, "count case-insensitive");
    CHECK(ups_is_hop_by_hop(&h, "x-secret-hop", 12), "Connection-listed header is hop-by-hop");
    CHECK(ups_is_hop_by_hop(&h, "Transfer-Encoding", 17), "Transfer-Encoding is hop-by-hop");
    CHECK(!ups_is_hop_by_hop(&h, "X-App", 5), "X-App is end-to-end");

    cfg_identity_t icfg;
    default_icfg(&icfg);
    tls_identity_t id;
    memset(&id, 0, sizeof(id));
    snprintf(id.class_name, sizeof(id.class_name), "device");
    snprintf(id.serial, sizeof(id.serial), "1a2b");
    snprintf(id.fingerprint, sizeof(id.fingerprint), "00ff");
    id.subject = "CN=device-1234,O=Example Org";
    id.issuer = "CN=Device CA";
    id.san_uri = "urn:portcullis:device:device-1234";
    id.san_dns = "";
    id.device_id = "device-1234";
    snprintf(id.not_after, sizeof(id.not_after), "2026-12-01T00:00:00Z");

    cfg_http_t hcfg;
    memset(&hcfg, 0, sizeof(hcfg));
    ups_names_t *names = ups_names_new(&icfg, NULL, 0, &hcfg);
    ups_req_meta_t m = {.method = "POST", .http_minor = 1, .content_length = 5, .peer_ip = "127.0.0.1",
                        .request_id = "rid-1", .id = &id, .icfg = &icfg, .names = names};
    struct evbuffer *b = evbuffer_new();
    ups_build_request_head(b, &h, &m);
    char *s = head_text(b);
    CHECK(strncmp(s, "POST /api/x?y=1 HTTP/1.1\r\nHost: example.com\r\n", 45) == 0, "request line and Host first");
    CHECK(count(s, "X-Client-Cert-Serial: ") == 1 && strstr(s, "X-Client-Cert-Serial: 1a2b\r\n"), "serial injected once");
    CHECK(!strstr(s, "deadbeef"), "spoofed serial dropped");
    CHECK(!strstr(s, "spoofed"), "spoofed device ids dropped");
    CHECK(strcasestr(s, "x-device-id") == strstr(s, "X-Device-Id: device-1234\r\n"), "only the verified device id");
    CHECK(count(s, "X-Client-Cert-Class") == 1 && strstr(s, "X-Client-Cert-Class: device\r\n"), "class is the verified one");
    CHECK(!strcasestr(s, "x-secret-hop") && !strcasestr(s, "keep-alive") && !strstr(s, "TE:") &&
              !strcasestr(s, "upgrade") && !strcasestr(s, "proxy-authorization") && !strcasestr(s, "connection"),
          "hop-by-hop headers dropped");
    CHECK(strstr(s, "X-Forwarded-For: 127.0.0.1\r\n") && !strstr(s, "6.6.6.6"), "X-Forwarded-For replaced");
    CHECK(strstr(s, "X-Forwarded-Proto: https\r\n") && !strstr(s, ": http\r\n"), "X-Forwarded-Proto set");
    CHECK(strstr(s, "X-Request-Id: rid-1\r\n") && !strstr(s, "client-id"), "request id is the gateway's");
    CHECK(strstr(s, "Authorization: Bearer tok\r\n") != NULL, "Authorization forwarded unchanged");
    CHECK(strstr(s, "Content-Length: 5\r\n") && count(s, "Content-Length") == 1, "Content-Length once");
    CHECK(!strcasestr(s, "expect"), "Expect not forwarded");
    CHECK(strstr(s, "X-App: kept\r\n") != NULL, "end-to-end header kept");
    CHECK(!strstr(s, "X-Client-Cert-SAN-DNS"), "empty SAN DNS not sent");
    CHECK(strlen(s) > 4 && strcmp(s + strlen(s) - 4, "\r\n\r\n") == 0, "head ends with a blank line");
    free(s);

    /* renamed identity headers: the defaults are ordinary headers again, and
     * the configured names are what get stripped */
    icfg.headers[CFG_H_DEVICE_ID] = "X-Mobile-Device";
    ups_names_free(names);
    m.names = names = ups_names_new(&icfg, NULL, 0, &hcfg);
    ups_hdrs_reset(&h);
    ups_hdrs_first(&h, "/", 1);
    add(&h, "Host", "h");
    add(&h, "x-mobile-device", "spoof");
    add(&h, "Transfer-Encoding", "chunked");
    ups_hdrs_finish(&h);
    m.chunked = 1;
    m.content_length = 0;
    ups_build_request_head(b, &h, &m);
    s = head_text(b);
    CHECK(strstr(s, "X-Mobile-Device: device-1234\r\n") && !strstr(s, "spoof"), "configured name stripped and injected");
    CHECK(count(s, "Transfer-Encoding: chunked\r\n") == 1 && !strstr(s, "Content-Length"), "chunked re-framed once");
    free(s);

    /* claim headers: stripped when client-sent, injected from the token */
    static const char *const strip[] = {"X-Token-Subject"};
    ups_kv_t add_kv[] = {{"X-Token-Subject", "user-42"}};
    ups_names_free(names);
    m.names = names = ups_names_new(&icfg, strip, 1, &hcfg);
    m.add = add_kv;
    m.nadd = 1;
    ups_hdrs_reset(&h);
    ups_hdrs_first(&h, "/", 1);
    add(&h, "Host", "h");
    add(&h, "x-token-subject", "admin");
    ups_hdrs_finish(&h);
    ups_build_request_head(b, &h, &m);
    s = head_text(b);
    CHECK(strstr(s, "X-Token-Subject: user-42\r\n") && !strstr(s, "admin"), "claim header stripped and injected");
    free(s);

    /* response direction */
    ups_hdrs_reset(&h);
    ups_hdrs_first(&h, "OK", 2);
    add(&h, "Content-Type", "application/json");
    add(&h, "Connection", "close, X-Hop");
    add(&h, "X-Hop", "1");
    add(&h, "Keep-Alive", "timeout=5");
    add(&h, "Transfer-Encoding", "chunked");
    add(&h, "Content-Length", "10");
    ups_hdrs_finish(&h);
    ups_build_response_head(b, 200, &h, "X-Extra: 1\r\n", UPS_FRAME_CHUNKED, 0, 0);
    s = head_text(b);
    CHECK(strncmp(s, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line");
    CHECK(strstr(s, "Content-Type: application/json\r\n") != NULL, "end-to-end kept");
    CHECK(strstr(s, "X-Extra: 1\r\n") != NULL, "extra lines added");
    CHECK(!strstr(s, "X-Hop") && !strcasestr(s, "keep-alive") && !strstr(s, "Connection"), "hop-by-hop dropped");
    CHECK(count(s, "Transfer-Encoding") == 1 && !strstr(s, "Content-Length"), "framing is the gateway's");
    free(s);
    ups_build_response_head(b, 404, NULL, NULL, UPS_FRAME_LENGTH, 7, 1);
    s = head_text(b);
    CHECK(strstr(s, "HTTP/1.1 404 Not Found\r\n") && strstr(s, "Content-Length: 7\r\n") &&
              strstr(s, "Connection: close\r\n"),
          "generated head with length and close");
    free(s);

    /* limits */
    ups_hdrs_t small;
    ups_hdrs_init(&small, 16, 2);
    CHECK(ups_hdrs_first(&small, "/0123456789abcdef", 17) < 0 && small.err == UPS_HDRS_TOO_BIG, "byte limit");
    ups_hdrs_reset(&small);
    add(&small, "a", "1");
    add(&small, "b", "2");
    CHECK(ups_hdrs_field(&small, "c", 1) < 0 && small.err == UPS_HDRS_TOO_MANY, "count limit");
    ups_hdrs_free(&small);

    ups_names_free(names);
    evbuffer_free(b);
    ups_hdrs_free(&h);
    return check_done();
}
