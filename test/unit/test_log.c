/* Unit tests: JSON log lines keep every context field whole. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../base/log.h"
#include "check.h"

/* One pc_log call in JSON format, its line parsed. */
static json_t *logged(const char *ctx, const char *msg)
{
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    pc_log(PC_INFO, ctx, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char line[4096] = "";
    rewind(f);
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    fclose(f);
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j)
        printf("# not JSON: %s\n", line);
    return j;
}

static const char *field(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

int main(void)
{
    pc_log_setup(PC_DEBUG, PC_LOG_JSON);

    json_t *j = logged("w=1 conn=7 peer=127.0.0.1:4242 action=waiting for request", "hello");
    CHECK(j != NULL, "a JSON line");
    CHECK(field(j, "action") && strcmp(field(j, "action"), "waiting for request") == 0,
          "action with spaces kept whole");
    CHECK(field(j, "peer") && strcmp(field(j, "peer"), "127.0.0.1:4242") == 0, "peer");
    CHECK(field(j, "conn") && strcmp(field(j, "conn"), "7") == 0, "conn");
    CHECK(field(j, "msg") && strcmp(field(j, "msg"), "hello") == 0, "msg");
    CHECK(json_object_get(j, "for") == NULL && json_object_get(j, "request") == NULL,
          "no stray members from the words of a value");
    json_decref(j);

    j = logged("action=reading request head w=0", "x");
    CHECK(j && field(j, "action") && strcmp(field(j, "action"), "reading request head") == 0 &&
              field(j, "w") && strcmp(field(j, "w"), "0") == 0,
          "a value with spaces in the middle of the context");
    json_decref(j);

    j = logged("action=say \"hi\" peer=[::1]:9", "quote \" and \\ and \x01");
    CHECK(j && field(j, "action") && strcmp(field(j, "action"), "say \"hi\"") == 0, "escaped value");
    CHECK(j && field(j, "peer") && strcmp(field(j, "peer"), "[::1]:9") == 0, "IPv6 peer");
    CHECK(j && field(j, "msg") && strcmp(field(j, "msg"), "quote \" and \\ and \x01") == 0,
          "escaped message");
    json_decref(j);

    j = logged("component=admin", "m");
    CHECK(j && field(j, "component") && strcmp(field(j, "component"), "admin") == 0, "one field");
    json_decref(j);

    j = logged("", "empty context");
    CHECK(j && field(j, "msg"), "empty context");
    json_decref(j);

    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char ctx[700];
    snprintf(ctx, sizeof(ctx), "k=%s action=last one", big);
    j = logged(ctx, "long");
    CHECK(j != NULL, "a long value still gives a JSON line");
    json_decref(j);
    return check_done();
}
