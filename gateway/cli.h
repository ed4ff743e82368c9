/* gateway/cli: operator subcommands (all but verify-attestation talk to
 * Redis directly).
 *
 *   portcullis revoke      -c FILE (--class C --serial S | --fingerprint F) [--reason R]
 *   portcullis revoke      -c FILE --device-id ID [--reason R]
 *   portcullis unrevoke    -c FILE (--class C --serial S | --fingerprint F | --device-id ID)
 *   portcullis revocations -c FILE [--cursor N] [--count N]
 *   portcullis verify-attestation ...   (cli_attest.h: offline, no Redis)
 *
 * FILE supplies the redis and revocation settings. The writes are the same
 * MULTI/SADD|SREM/HSET|HDEL/PUBLISH/EXEC as the admin API's (policy/revstore),
 * sent with synchronous hiredis: this runs outside any event loop.
 * revoke --device-id revokes the device id itself (the entry
 * "device-id=<id>", which refuses every certificate carrying it) and every
 * live certificate issued to it, found through the issuance records
 * (policy/revstore.h, docs/issuance.md); unrevoke --device-id lifts the
 * device entry only. revoke refuses a class that is not in tls.classes.
 */
#ifndef PORTCULLIS_CLI_H
#define PORTCULLIS_CLI_H

#include <stdio.h>

/* Prints the synopsis line of every subcommand (only: of that one; NULL:
 * all), the first led by "usage:" when first is 1. main's --help uses it,
 * so the help cannot omit a form the CLI accepts. */
void gw_cli_synopsis(FILE *f, const char *only, int first);
/* Prints the subcommands' exit statuses. */
void gw_cli_exit_status(FILE *f);

/* 1 if cmd names a subcommand handled by gw_cli_main(). */
int gw_cli_is_command(const char *cmd);

/* Runs subcommand cmd; argv[0] is the subcommand itself and argv[1..argc-1]
 * its options. Returns the process exit status: 0 success, 1 Redis error,
 * 2 usage, configuration or validation error (also an entry that could
 * match no certificate). */
int gw_cli_main(const char *cmd, int argc, char **argv);

#endif
