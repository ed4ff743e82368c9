/* A minimal test harness: CHECK prints "ok - name" or "not ok - name",
 * and check_done() prints "N passed, N failed" and returns the exit code. */
#ifndef PORTCULLIS_TEST_CHECK_H
#define PORTCULLIS_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, name)                                                      \
    do {                                                                       \
        if (cond) {                                                            \
            check_passed++;                                                    \
            printf("ok - %s\n", name);                                         \
        } else {                                                               \
            check_failed++;                                                    \
            printf("not ok - %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); \
        }                                                                      \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
