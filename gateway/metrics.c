/* gateway/metrics: the /metrics exposition (see metrics.h). */
#include "metrics.h"

#include <event2/buffer.h>
#include <event2/http.h>

void gw_metrics_render(gw_proc_t *p, pc_buf_t *out)
{
    (void)p;
    pc_metrics_render(out);
}

void gw_metrics_serve(gw_proc_t *p, struct evhttp_request *req)
{
    pc_buf_t b = {0};
    gw_metrics_render(p, &b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    if (b.oom || !out) {
        evhttp_add_header(h, "Content-Type", "application/json");
        if (out)
            evbuffer_add_printf(out, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                                pc_err_code(PC_E_OUT_OF_MEMORY), pc_err_message(PC_E_OUT_OF_MEMORY));
        evhttp_send_reply(req, pc_err_status(PC_E_OUT_OF_MEMORY), NULL, out);
    } else {
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_add_header(h, "Cache-Control", "no-store");
        evbuffer_add(out, b.p ? b.p : "", b.len);
        evhttp_send_reply(req, 200, "OK", out);
    }
    if (out)
        evbuffer_free(out);
    pc_buf_free(&b);
}
