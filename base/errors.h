/* base/errors: the error catalog. Every error response the gateway
 * produces itself ({"error": code, "message": ...}) names one entry of
 * base/errors.def, which fixes its code and status; the message there is the
 * default, and a caller may give a more precise one. */
#ifndef PORTCULLIS_ERRORS_H
#define PORTCULLIS_ERRORS_H

enum pc_err {
#define PC_E(id, status, code, msg) PC_E_##id,
#include "errors.def"
#undef PC_E
    PC_E__COUNT
};

/* The entry's HTTP status, code and default message (never NULL; an
 * out-of-range value reads as PC_E_INTERNAL). */
int pc_err_status(enum pc_err e);
const char *pc_err_code(enum pc_err e);
const char *pc_err_message(enum pc_err e);
/* The entry whose code is code, or -1. */
int pc_err_lookup(const char *code);

#endif
