/* Unit tests for the error catalog (base/errors.def) and its page,
 * docs/errors.md: codes unique and snake_case, statuses errors, and the
 * page listing exactly the catalog's codes with the same statuses.
 * Run from the repository root (or pass the root as argv[1]). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/errors.h"
#include "check.h"

static int snake(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
            return 0;
    return 1;
}

static void test_catalog(void)
{
    int unique = 1, names = 1, statuses = 1, messages = 1, lookup = 1;
    for (int i = 0; i < PC_E__COUNT; i++) {
        enum pc_err e = (enum pc_err)i;
        const char *code = pc_err_code(e);
        for (int k = 0; k < i; k++)
            if (strcmp(code, pc_err_code((enum pc_err)k)) == 0) {
                printf("# code %s twice\n", code);
                unique = 0;
            }
        if (!snake(code)) {
            printf("# code \"%s\" is not [a-z_]+\n", code);
            names = 0;
        }
        if (pc_err_status(e) < 400 || pc_err_status(e) > 599) {
            printf("# %s: status %d\n", code, pc_err_status(e));
            statuses = 0;
        }
        if (!pc_err_message(e)[0])
            messages = 0;
        if (pc_err_lookup(code) != i)
            lookup = 0;
    }
    CHECK(unique, "catalog: every code once");
    CHECK(names, "catalog: codes are [a-z_]+");
    CHECK(statuses, "catalog: statuses are 4xx or 5xx");
    CHECK(messages, "catalog: every entry has a default message");
    CHECK(lookup, "catalog: pc_err_lookup finds every code");
    CHECK(pc_err_lookup("nope") == PC_E_NONE && pc_err_lookup(NULL) == PC_E_NONE,
          "catalog: unknown code looks up as PC_E_NONE");
    CHECK(strcmp(pc_err_code(PC_E_NONE), "internal") == 0 && pc_err_status(PC_E__COUNT) == 500,
          "catalog: out of range reads as internal");
    CHECK(PC_E_OUT_OF_MEMORY < PC_E__CLIENT && PC_E_CLASS_NOT_ALLOWED < PC_E__CLIENT &&
              PC_E_RELOAD_FAILED >= PC_E__CLIENT && PC_E_NOT_FOUND >= PC_E__CLIENT &&
              PC_E__CLIENT < PC_E__COUNT,
          "catalog: the client listener's entries first, then the admin API's");
    CHECK(strcmp(pc_err_code(PC_E_OUT_OF_MEMORY), "out_of_memory") == 0 &&
              pc_err_status(PC_E_OUT_OF_MEMORY) == 503 && pc_err_status(PC_E_INTERNAL) == 500,
          "catalog: out_of_memory 503, internal 500");
    /* the old spellings of unified conditions are gone */
    static const char *const gone[] = {"forbidden_class", "body_too_large", "internal_error",
                                       "unauthorized"};
    int none = 1;
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (pc_err_lookup(gone[i]) != PC_E_NONE) {
            printf("# %s is back\n", gone[i]);
            none = 0;
        }
    CHECK(none, "catalog: one code per condition (no forbidden_class, body_too_large, ...)");
}

/* One table row of docs/errors.md: "| `code` | status | ...". 1 with the
 * code and status, 0 for any other line. */
static int parse_row(const char *line, char *code, size_t cap, int *status)
{
    if (strncmp(line, "| `", 3) != 0)
        return 0;
    const char *p = line + 3, *end = strchr(p, '`');
    if (!end || (size_t)(end - p) >= cap)
        return 0;
    memcpy(code, p, (size_t)(end - p));
    code[end - p] = '\0';
    p = end + 1;
    while (*p == ' ')
        p++;
    if (*p != '|')
        return 0;
    *status = atoi(p + 1);
    return 1;
}

static void test_doc(const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/errors.md", root);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "docs/errors.md opens");
    if (!f)
        return;
    int seen[PC_E__COUNT] = {0};
    int rows = 0, known = 1, same = 1, surface = 1, in_admin = 0;
    char line[4096], code[128];
    while (fgets(line, sizeof line, f)) {
        int status;
        if (strncmp(line, "## ", 3) == 0)
            in_admin = strncmp(line, "## Admin", 8) == 0;
        if (!parse_row(line, code, sizeof code, &status))
            continue;
        rows++;
        int e = pc_err_lookup(code);
        if (e == PC_E_NONE) {
            printf("# docs/errors.md lists %s, which the catalog does not have\n", code);
            known = 0;
            continue;
        }
        if (status != pc_err_status((enum pc_err)e)) {
            printf("# docs/errors.md: %s is %d, the catalog says %d\n", code, status,
                   pc_err_status((enum pc_err)e));
            same = 0;
        }
        if (!in_admin && e >= PC_E__CLIENT) {
            printf("# docs/errors.md lists the admin API's %s for the client listener\n", code);
            surface = 0;
        }
        if (!in_admin || e >= PC_E__CLIENT)
            seen[e] = 1;   /* a client entry must be listed for the client listener */
    }
    fclose(f);
    int all = 1;
    for (int i = 0; i < PC_E__COUNT; i++)
        if (!seen[i]) {
            printf("# docs/errors.md does not list %s\n", pc_err_code((enum pc_err)i));
            all = 0;
        }
    CHECK(rows >= PC_E__COUNT, "docs/errors.md has a row per code");
    CHECK(known, "docs/errors.md lists only catalog codes");
    CHECK(same, "docs/errors.md gives each code the catalog's status");
    CHECK(all, "docs/errors.md lists every catalog code (the client listener's in its tables)");
    CHECK(surface, "docs/errors.md lists admin-only codes under the admin listener only");
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    test_catalog();
    test_doc(root);
    return check_done();
}
