/* issuance/iss: the issuance module as the gateway sees it
 * (docs/issuance.md). One iss_gen_t per runtime generation holds what is
 * loaded from the configuration's issuance section (the issuing CA, every
 * platform's attester); it registers the module's internal routes
 * (<path_prefix>challenge, issue, renew) into the gateway's table
 * (policy/iroute.h), whose handlers run the issuance flow (flow.c) on the
 * worker that took the request.
 *
 * Threads: an iss_gen_t is immutable after loading and shared by every
 * worker; it must outlive the requests of its generation.
 */
#ifndef PORTCULLIS_ISSUANCE_ISS_H
#define PORTCULLIS_ISSUANCE_ISS_H

#include "../config/config.h"
#include "../policy/iroute.h"

typedef struct iss_gen iss_gen_t;

/* Loads the CA and every platform's attester of cfg->issuance (which must
 * be set). Every failure is passed to report (one line, without the file's
 * path), so all of them are told at once. Boolean-like constructor: the
 * object, or NULL when anything failed. */
iss_gen_t *iss_gen_load(const cfg_t *cfg, void (*report)(void *arg, const char *msg), void *arg);
void iss_gen_free(iss_gen_t *g);   /* NULL is a no-op */

/* Registers the three internal routes with add(table, entry). The entries'
 * paths and arguments belong to g. Syscall-like (-1: add failed). */
int iss_gen_routes(iss_gen_t *g, pol_iroute_add_fn add, void *table);

#endif
