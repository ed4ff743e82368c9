/* base/errors: the catalog's table. */
#include "errors.h"

#include <string.h>

static const struct {
    int status;
    const char *code, *msg;
} catalog[PC_E__COUNT] = {
#define PC_E(id, st, c, m) [PC_E_##id] = {st, c, m},
#define PC_EA PC_E
#include "errors.def"
#undef PC_EA
#undef PC_E
};

static unsigned ix(enum pc_err e)
{
    return (unsigned)e < PC_E__COUNT ? (unsigned)e : (unsigned)PC_E_INTERNAL;
}

int pc_err_status(enum pc_err e)
{
    return catalog[ix(e)].status;
}

const char *pc_err_code(enum pc_err e)
{
    return catalog[ix(e)].code;
}

const char *pc_err_message(enum pc_err e)
{
    return catalog[ix(e)].msg;
}

int pc_err_lookup(const char *code)
{
    for (int i = 0; i < PC_E__COUNT; i++)
        if (code && strcmp(catalog[i].code, code) == 0)
            return i;
    return -1;
}
