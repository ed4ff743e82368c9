/* gateway/cli_attest: `portcullis verify-attestation`, the configured
 * attestation provider run on a saved token, offline (docs/operations.md,
 * docs/issuance.md "Why was this device refused?").
 *
 *   portcullis verify-attestation -c FILE --platform NAME --at RFC3339
 *       [--nonce NONCE] [--key-id B64] [--csr FILE] [--client-data-hash B64] TOKEN_FILE
 *
 * It loads FILE (no Redis, no listeners), the platform's attester, builds
 * the request body the app would send, the key-binding challenge
 * (iss_bind_challenge from --nonce and the --csr key, or --client-data-hash
 * itself), runs the attester's verify on a private event loop with the
 * clock set to --at, and prints one JSON line:
 *   {"ok":true,"platform","provider","level","app_id","key_sha256","summary"}
 *   {"ok":false,"reason":<catalog code>,"detail":<message>}
 * Exit status: 0 accepted, 1 refused, 2 usage or configuration error.
 *
 * The file is in SRC_CORE (not the gateway's main objects) so that the unit
 * tests reach its pure helpers.
 */
#ifndef PORTCULLIS_CLI_ATTEST_H
#define PORTCULLIS_CLI_ATTEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Parses an RFC 3339 date-time s[0..len): YYYY-MM-DDTHH:MM:SS, an
 * optional fraction (.1 to 9 digits, truncated to milliseconds), then Z or
 * an offset +HH:MM / -HH:MM; 'T' and 'Z' in either case; seconds 00..60 (a
 * leap second reads as the next minute's first). Pure (no allocation, no
 * locale, no time zone database). Syscall-like: 0 with *ms the
 * milliseconds since the epoch, or -1 for anything else (another shape, a
 * field out of range such as February 30, a time before 1970-01-01Z, or
 * trailing bytes); *ms is then untouched. */
int gw_rfc3339_ms(const char *s, size_t len, int64_t *ms);

/* Decodes base64 or base64url (padding optional) s[0..len) of exactly 32
 * bytes into out. Pure. Syscall-like (-1: another alphabet, length or
 * size). */
int gw_b64_32(const char *s, size_t len, unsigned char out[32]);

/* The issue request body the app would send for one saved token:
 * {"platform", <member>: token (the text; parsed as a JSON value when
 * is_json), "nonce", "key_id", "csr"}, the last three only when not NULL,
 * member omitted when NULL (provider none). The token is text[0..len)
 * without one trailing "\n" or "\r\n". Syscall-like: 0 with *out (a new
 * reference), or -1 with *err a static reason ("the token file is not
 * JSON", "the token file is not UTF-8 text", "out of memory"). */
int gw_attest_body(const char *platform, const char *member, int is_json, const char *text,
                   size_t len, const char *nonce, const char *key_id, const char *csr,
                   json_t **out, const char **err);

/* Runs the subcommand; argv[0] is "verify-attestation". Returns the exit
 * status above. */
int gw_attest_cli_main(int argc, char **argv);

#endif
