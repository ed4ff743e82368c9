/* Unit tests: HTTP/1.1 request framing checks (gateway/h1). */
#include <string.h>

#include "../../gateway/h1.h"
#include "check.h"

/* Scans s whole from state st, in pieces of `piece` bytes; returns the
 * total consumed or the first error; *end gets the final state. */
static long scan(uint8_t st, const char *s, size_t piece, uint8_t *end)
{
    size_t n = strlen(s), off = 0;
    long total = 0;
    while (off < n && st != GW_H1L_DONE) {
        size_t k = n - off < piece ? n - off : piece;
        long r = gw_h1_lines(&st, s + off, k);
        if (r < 0)
            return r;
        total += r;
        off += k;
    }
    *end = st;
    return total;
}

static void lines_case(const char *name, uint8_t start, const char *s, long want, uint8_t want_state)
{
    static const size_t pieces[] = {1, 2, 3, 7, 4096};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        uint8_t end = 0;
        long r = scan(start, s, pieces[i], &end);
        char what[160];
        snprintf(what, sizeof(what), "%s (pieces of %zu)", name, pieces[i]);
        CHECK(r == want && (want < 0 || end == want_state), what);
    }
}

int main(void)
{
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    lines_case("a head", GW_H1L_LEAD, req, (long)strlen(req), GW_H1L_DONE);
    lines_case("a head and a body after it", GW_H1L_LEAD, "GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\n",
               (long)strlen(req), GW_H1L_DONE);
    lines_case("leading empty lines", GW_H1L_LEAD, "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
               (long)strlen(req) + 4, GW_H1L_DONE);
    lines_case("an empty value", GW_H1L_LEAD, "GET / HTTP/1.1\r\nX-Empty:\r\nHost: x\r\n\r\n",
               (long)strlen(req) + 10, GW_H1L_DONE);
    lines_case("an unfinished head", GW_H1L_LEAD, "GET / HTTP/1.1\r\nHost: x\r\n",
               25, GW_H1L_BOL);
    lines_case("bare LF after the request line", GW_H1L_LEAD, "GET / HTTP/1.1\nHost: x\r\n\r\n",
               GW_H1_BAD_EOL, 0);
    lines_case("bare LF after a header", GW_H1L_LEAD, "GET / HTTP/1.1\r\nHost: x\n\r\n",
               GW_H1_BAD_EOL, 0);
    lines_case("bare LF ending the head", GW_H1L_LEAD, "GET / HTTP/1.1\r\nHost: x\r\n\n",
               GW_H1_BAD_EOL, 0);
    lines_case("bare LF before the request", GW_H1L_LEAD, "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
               GW_H1_BAD_EOL, 0);
    lines_case("bare CR in a line", GW_H1L_LEAD, "GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
               GW_H1_BAD_EOL, 0);
    lines_case("CR CR LF", GW_H1L_LEAD, "GET / HTTP/1.1\r\r\nHost: x\r\n\r\n", GW_H1_BAD_EOL, 0);
    lines_case("obs-fold (SP)", GW_H1L_LEAD, "GET / HTTP/1.1\r\nX-A: b\r\n c\r\nHost: x\r\n\r\n",
               GW_H1_FOLD, 0);
    lines_case("obs-fold (HT) after an empty value", GW_H1L_LEAD,
               "GET / HTTP/1.1\r\nX-A:\r\n\tc\r\nHost: x\r\n\r\n", GW_H1_FOLD, 0);
    lines_case("whitespace before the first header", GW_H1L_LEAD,
               "GET / HTTP/1.1\r\n Host: x\r\n\r\n", GW_H1_FOLD, 0);
    lines_case("no trailers", GW_H1L_BOL, "\r\n", 2, GW_H1L_DONE);
    lines_case("trailers", GW_H1L_BOL, "X-T: 1\r\nX-U: 2\r\n\r\nGET", 18, GW_H1L_DONE);
    lines_case("bare LF ending the trailers", GW_H1L_BOL, "\n", GW_H1_BAD_EOL, 0);
    lines_case("bare LF after a trailer", GW_H1L_BOL, "X-T: 1\n\r\n", GW_H1_BAD_EOL, 0);
    lines_case("folded trailer", GW_H1L_BOL, "X-T: 1\r\n 2\r\n\r\n", GW_H1_FOLD, 0);

    uint8_t st = GW_H1L_IDLE;
    CHECK(gw_h1_lines(&st, "\n\n", 2) == 0 && st == GW_H1L_IDLE, "idle: nothing scanned");
    st = GW_H1L_DONE;
    CHECK(gw_h1_lines(&st, "\n", 1) == 0 && st == GW_H1L_DONE, "done: nothing scanned");
    st = GW_H1L_LINE;
    CHECK(gw_h1_lines(&st, "ab\n", 3) == GW_H1_BAD_EOL && st == GW_H1L_LINE,
          "state unchanged after an error");

    CHECK(gw_h1_only_chunked("chunked", 7), "chunked");
    CHECK(gw_h1_only_chunked(" Chunked\t", 9), "Chunked with whitespace");
    CHECK(!gw_h1_only_chunked("gzip, chunked", 13), "gzip, chunked");
    CHECK(!gw_h1_only_chunked("chunked, chunked", 16), "chunked twice");
    CHECK(!gw_h1_only_chunked("gzip", 4), "gzip");
    CHECK(!gw_h1_only_chunked("", 0), "empty");
    CHECK(!gw_h1_only_chunked("chunked;q=1", 11), "with a parameter");
    CHECK(!gw_h1_only_chunked("chunke", 6), "prefix");

    CHECK(!gw_h1_has_obs_text("plain ascii ~", 13), "ASCII");
    CHECK(gw_h1_has_obs_text("caf\xc3\xa9", 5), "UTF-8");
    CHECK(gw_h1_has_obs_text("\x80", 1), "0x80");
    CHECK(gw_h1_has_obs_text("a\xff", 2), "0xff");
    return check_done();
}
