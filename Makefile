# portcullis — see README.md. `make` builds build/portcullis.
CC      ?= cc
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1 -Wall -Wextra -Werror -Wshadow -Wformat=2 -g \
              -I$(LLHTTP_INC) -fno-strict-aliasing
OPT     ?= -O2
CFLAGS  ?=
LIBS    = -lssl -lcrypto -levent -levent_pthreads -lyaml -lhiredis -ljansson -lcbor -lpthread
SAN     = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC_CORE = config/config.c config/walk.c config/config_check.c config/config_policy.c config/config_issuance.c config/config_attest_android.c config/config_metrics.c config/config_listen.c config/config_resolver.c config/host.c config/route.c tls/tls.c tls/vcache.c tls/store.c policy/route.c policy/target.c policy/revocation.c policy/mirror.c policy/revstore.c policy/redis.c policy/ratelimit.c policy/jwt.c policy/issued.c \
           issuance/issuance.c issuance/records.c issuance/csr.c issuance/issuer.c issuance/attest_play.c issuance/attest_http.c issuance/attest_none.c issuance/attest_android.c issuance/keydesc.c issuance/attesters.c \
           issuance/appattest.c issuance/attest_appattest.c config/config_attest_apple.c \
           issuance/iss.c issuance/flow.c \
           upstream/http.c upstream/proxy.c base/log.c base/metrics.c base/errors.c base/dns.c
SRC_CORE += gateway/h1.c gateway/iroute.c gateway/runtime.c gateway/upgrade_msg.c gateway/proxy_proto.c gateway/metrics.c gateway/metrics_http.c
SRC_CORE += config/config_service.c gateway/service.c
SRC_CORE += gateway/cli_attest.c
SRC_GW   = gateway/main.c gateway/worker.c gateway/upgrade.c gateway/conn.c gateway/request.c gateway/gate.c gateway/admin.c gateway/cli.c
LLHTTP   = $(LLHTTP_SRC)/api.c $(LLHTTP_SRC)/http.c $(LLHTTP_SRC)/llhttp.c
HDRS     = $(wildcard base/*.h base/*.def config/*.h gateway/*.h issuance/*.h policy/*.h tls/*.h upstream/*.h)

UNIT_TESTS = $(patsubst test/unit/%.c,%,$(wildcard test/unit/test_*.c))

.PHONY: all asan test unit deps run clean compare
all: build/portcullis build/portcullis-bench build/mint-jwt build/mint-integrity build/mint-keyattest build/mint-appattest

build/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

build/asan/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

LLHTTP_OBJ      = $(patsubst $(LLHTTP_SRC)/%.c,build/llhttp/%.o,$(LLHTTP))
LLHTTP_ASAN_OBJ = $(patsubst $(LLHTTP_SRC)/%.c,build/asan/llhttp/%.o,$(LLHTTP))

build/portcullis: $(SRC_CORE) $(SRC_GW) $(HDRS) $(LLHTTP_OBJ)
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) $(SRC_CORE) $(SRC_GW) $(LLHTTP_OBJ) -o $@ $(LIBS)

build/asan/portcullis: $(SRC_CORE) $(SRC_GW) $(HDRS) $(LLHTTP_ASAN_OBJ)
	@mkdir -p build/asan
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) $(CFLAGS) $(SRC_CORE) $(SRC_GW) $(LLHTTP_ASAN_OBJ) -o $@ $(LIBS)

# Unit tests link the modules they test (never main.c), built with sanitizers.
build/asan/test_%: test/unit/test_%.c $(SRC_CORE) $(HDRS) $(LLHTTP_ASAN_OBJ)
	@mkdir -p build/asan
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) $(CFLAGS) $< $(SRC_CORE) $(LLHTTP_ASAN_OBJ) -o $@ $(LIBS)

asan: build/asan/portcullis $(addprefix build/asan/,$(UNIT_TESTS)) build/asan/test_bench

deps:
	@scripts/deps.sh

# Installs what is missing, builds, starts redis-server and test upstreams on
# loopback, and runs every test (unit, integration, and both under ASan+UBSan).
test:
	@scripts/test.sh

unit: asan
	@scripts/test.sh --unit-only

# Quick start: dev PKI, local Redis, demo upstream, gateway in the foreground.
run:
	@scripts/run.sh

clean:
	rm -rf build

# The bundled load generator (bench/README.md).
include bench/bench.mk
include bench/compare.mk
# Test tools (token minting for the integration tests).
include test/tools/tools.mk
include test/tools/issuance.mk
include test/tools/keyattest.mk
include test/tools/appattest.mk
# libFuzzer targets: `make fuzz` (docs/hacking.md); optional, so a build tree
# without fuzz/ (e.g. a container image) still builds.
-include fuzz/fuzz.mk
