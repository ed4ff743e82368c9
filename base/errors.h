/* base/errors: the error catalog. Every error response the gateway
 * produces itself ({"error": code, "message": ...}) names one entry of
 * base/errors.def, which fixes its code and status; the message there is the
 * default, and a caller may give a more precise one. */
#ifndef PORTCULLIS_ERRORS_H
#define PORTCULLIS_ERRORS_H

/* The client listener's entries first (0 .. PC_E__CLIENT - 1: the label
 * values of portcullis_http_errors_total), then the admin API's own. */
enum pc_err {
    PC_E_NONE = -1,   /* no error (a field's "not set"); never answered */
#define PC_E(id, status, code, msg) PC_E_##id,
#define PC_EA(id, status, code, msg)
#include "errors.def"
#undef PC_E
#undef PC_EA
    PC_E__CLIENT,
    PC_E__ADMIN_BEFORE = PC_E__CLIENT - 1,
#define PC_E(id, status, code, msg)
#define PC_EA(id, status, code, msg) PC_E_##id,
#include "errors.def"
#undef PC_E
#undef PC_EA
    PC_E__COUNT
};

/* The entry's HTTP status, code and default message (never NULL; an
 * out-of-range value, PC_E_NONE included, reads as PC_E_INTERNAL). */
int pc_err_status(enum pc_err e);
const char *pc_err_code(enum pc_err e);
const char *pc_err_message(enum pc_err e);
/* The entry whose code is code, or -1 (PC_E_NONE). */
int pc_err_lookup(const char *code);

#endif
