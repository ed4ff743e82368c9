# bench.mk: builds the load generator build/portcullis-bench and its unit
# tests. Include it from the top-level Makefile (include bench/bench.mk) or
# use it next to it:  make -f Makefile -f bench/bench.mk build/portcullis-bench
# It also works on its own:  make -f bench/bench.mk
#
# Targets: build/portcullis-bench, build/asan/test_bench,
#          build/asan/portcullis-bench (the tool under ASan+UBSan),
#          bench (the tool), bench-unit (runs the unit tests),
#          bench-integration (the end-to-end test against build/portcullis).

BENCH_SAVED_GOAL := $(.DEFAULT_GOAL)

CC ?= cc
BENCH_DIR     ?= bench
BENCH_BUILD   ?= build
BENCH_CFLAGS  = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g
BENCH_LIBS    = -lssl -lcrypto -levent -levent_pthreads -lpthread -lm
BENCH_SAN     = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BENCH_PYTHON  ?= $(firstword $(wildcard /usr/bin/python3) python3)

BENCH_SRC      = $(filter-out $(BENCH_DIR)/test_%.c,$(wildcard $(BENCH_DIR)/*.c))
BENCH_HDRS     = $(wildcard $(BENCH_DIR)/*.h)
# the pieces that need no sockets, for the unit tests
BENCH_UNIT_SRC = $(BENCH_DIR)/hist.c $(BENCH_DIR)/args.c $(BENCH_DIR)/httpresp.c

$(BENCH_BUILD)/portcullis-bench: $(BENCH_SRC) $(BENCH_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(BENCH_SRC) -o $@ $(BENCH_LIBS)

$(BENCH_BUILD)/asan/test_bench: $(BENCH_DIR)/test_bench.c $(BENCH_UNIT_SRC) $(BENCH_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(BENCH_SAN) $(BENCH_DIR)/test_bench.c $(BENCH_UNIT_SRC) -o $@ $(BENCH_LIBS)

# the tool itself under ASan+UBSan, for debugging
$(BENCH_BUILD)/asan/portcullis-bench: $(BENCH_SRC) $(BENCH_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(BENCH_SAN) $(BENCH_SRC) -o $@ $(BENCH_LIBS)

.PHONY: bench bench-unit bench-integration
bench: $(BENCH_BUILD)/portcullis-bench

bench-unit: $(BENCH_BUILD)/asan/test_bench
	$(BENCH_BUILD)/asan/test_bench

bench-integration: $(BENCH_BUILD)/portcullis-bench
	$(BENCH_PYTHON) $(BENCH_DIR)/test_bench_integration.py

# Keep the including Makefile's default goal; on its own, build the tool.
ifeq ($(words $(MAKEFILE_LIST)),1)
.DEFAULT_GOAL := bench
else
.DEFAULT_GOAL := $(BENCH_SAVED_GOAL)
endif
