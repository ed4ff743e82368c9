/* config/config_service: the top-level keys for running as a service.
 *
 *   user: portcullis     # drop to this user once every socket and file is open
 *   group: portcullis    # optional: else the user's primary group
 *
 * Both names are resolved when the file is loaded (the system's user and
 * group databases), so an unknown one is a file:line:col error of --check
 * and of the start. group without user is an error: a gateway that keeps
 * uid 0 with another group gains no protection. The drop itself is
 * gateway/service.c's. Restart-only. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

/* Names as useradd(8) takes them: no ':' or ',' (the databases' separators),
 * nothing outside printable ASCII, at most 32 bytes. */
static int plausible_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32 || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == ':' || s[i] == ',' || s[i] == '/')
            return 0;
    return 1;
}

static const char *lookup_error(int r)
{
    return r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM ? "no such name on this system"
                                                                         : strerror(r);
}

static void parse_user(cfgw_t *w, yaml_node_t *n, cfg_runas_t *ra)
{
    const char *s = cfgw_scalar(w, n, "user", "a user name");
    if (!s)
        return;
    if (!plausible_name(s)) {
        cfgw_err(w, n, "user", "expected a user name, got \"%.40s\"", s);
        return;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    int r = getpwnam_r(s, &pw, buf, sizeof buf, &res);
    if (!res) {
        cfgw_err(w, n, "user", "unknown user \"%s\": %s", s, lookup_error(r));
        return;
    }
    ra->user = cfgp_xstrdup(s);
    ra->uid = pw.pw_uid;
    if (!ra->group)
        ra->gid = pw.pw_gid;
}

static void parse_group(cfgw_t *w, yaml_node_t *n, cfg_runas_t *ra)
{
    const char *s = cfgw_scalar(w, n, "group", "a group name");
    if (!s)
        return;
    if (!plausible_name(s)) {
        cfgw_err(w, n, "group", "expected a group name, got \"%.40s\"", s);
        return;
    }
    struct group gr, *res = NULL;
    char buf[8192];
    int r = getgrnam_r(s, &gr, buf, sizeof buf, &res);
    if (!res) {
        cfgw_err(w, n, "group", "unknown group \"%s\": %s", s, lookup_error(r));
        return;
    }
    ra->group = cfgp_xstrdup(s);
    ra->gid = gr.gr_gid;
}

void cfgs_parse_runas(cfgw_t *w, yaml_node_t *user, yaml_node_t *group, cfg_t *cfg)
{
    cfg_runas_t *ra = &cfg->runas;
    if (group && !user) {
        cfgw_err(w, group, "group", "group needs user: the gateway drops to a user (and this "
                 "group) after opening its sockets and files");
        return;
    }
    if (group)
        parse_group(w, group, ra);
    if (user)
        parse_user(w, user, ra);
    if (ra->user && ra->uid != 0 && ra->gid == 0)   /* root's group keeps root's files writable */
        cfgw_err(w, group ? group : user, group ? "group" : "user", "%s resolves to gid 0 (root's "
                 "group) for the non-root user \"%s\": name a group of its own%s", group ? "group" :
                 "the user's primary group", ra->user, group ? "" : " with group:");
}

void cfgs_free_runas(cfg_t *cfg)
{
    free(cfg->runas.user);
    free(cfg->runas.group);
}
