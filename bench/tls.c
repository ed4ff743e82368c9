/* tls: the client SSL_CTX of a thread (versions, client certificate, CAs). */
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "client.h"

/* The reasons queued by OpenSSL, most specific first, e.g.
 * "No such file or directory (system lib, BIO lib)". */
static void ssl_reason(char *buf, size_t n)
{
    unsigned long e;
    size_t len = 0;
    int count = 0;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0 && len + 1 < n) {
        const char *r;
        char tmp[128];
        if (ERR_SYSTEM_ERROR(e)) {
            r = strerror(ERR_GET_REASON(e));
        } else {
            r = ERR_reason_error_string(e);
            if (!r) {
                ERR_error_string_n(e, tmp, sizeof(tmp));
                r = tmp;
            }
        }
        if (strstr(buf, r))
            continue;
        len += (size_t)snprintf(buf + len, n - len, "%s%s", count == 0 ? "" : count == 1 ? " (" : ", ", r);
        count++;
    }
    if (count > 1 && len + 1 < n)
        snprintf(buf + len, n - len, ")");
    if (!count)
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
}

SSL_CTX *bench_tls_ctx(const bench_opts_t *o, char *err, size_t errlen)
{
    char why[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "cannot create a TLS context: %s", why);
        return NULL;
    }
    int minv = TLS1_2_VERSION, maxv = o->tls_max == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    long opts = SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (o->mode == MODE_RESUME) {
        switch (o->resume_kind) {
        case RESUME_TLS13:
            minv = maxv = TLS1_3_VERSION;
            break;
        case RESUME_TLS12_ID:
            minv = maxv = TLS1_2_VERSION;
            opts |= SSL_OP_NO_TICKET; /* the server must fall back to a session ID */
            break;
        case RESUME_TLS12_TICKET:
            minv = maxv = TLS1_2_VERSION;
            break;
        }
        /* sessions are handed to the connection by the new-session callback */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (maxv == TLS1_2_VERSION)
            opts |= SSL_OP_NO_TICKET;
    }
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_max_proto_version(ctx, maxv);
    SSL_CTX_set_options(ctx, (uint64_t)opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (o->cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
            ssl_reason(why, sizeof(why));
            snprintf(err, errlen, "cannot load the client certificate --cert %s: %s", o->cert, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
            ssl_reason(why, sizeof(why));
            if (o->key == o->cert)
                snprintf(err, errlen, "cannot load a private key from --cert %s (%s); give the key with --key",
                         o->cert, why);
            else
                snprintf(err, errlen, "cannot load the client key --key %s: %s", o->key, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ssl_reason(why, sizeof(why));
            snprintf(err, errlen, "the key %s does not match the certificate %s: %s", o->key,
                     o->cert, why);
            goto fail;
        }
    }
    if (o->cacert) {
        if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1) {
            ssl_reason(why, sizeof(why));
            snprintf(err, errlen, "cannot load the CA certificates --cacert %s: %s", o->cacert, why);
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
