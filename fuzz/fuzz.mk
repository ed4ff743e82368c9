# libFuzzer targets (included from the top-level Makefile; docs/hacking.md).
#   make fuzz              builds every fuzz/fuzz_<name>.c into build/fuzz/fuzz_<name>
#   scripts/fuzz.sh        runs each briefly over its seeds (part of `make test`)
# Built with clang (Debian clang + libclang-rt-14-dev) and ASan+UBSan; the
# gateway's sources and llhttp are compiled once with coverage
# instrumentation into build/fuzz/obj/ and linked into every target. A
# target that #includes a source file (to reach its static functions) leaves
# that file's object out through FUZZ_EXCLUDE_<name>.
FUZZ_CC    ?= clang
FUZZ_SAN    = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = $(CFLAGS_BASE) -O1 -Wno-unused-function $(FUZZ_SAN)

FUZZ_TARGETS   = $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_CORE_OBJ  = $(patsubst %.c,build/fuzz/obj/%.o,$(SRC_CORE))
FUZZ_LLHTTP_OBJ = $(patsubst $(LLHTTP_SRC)/%.c,build/fuzz/llhttp/%.o,$(LLHTTP))

# Sources a target includes itself (see the top of each target).
FUZZ_EXCLUDE_fuzz_request  = build/fuzz/obj/upstream/proxy.o
FUZZ_EXCLUDE_fuzz_response = build/fuzz/obj/upstream/proxy.o
FUZZ_EXCLUDE_fuzz_revocation = build/fuzz/obj/policy/mirror.o
build/fuzz/fuzz_request: gateway/request.c gateway/conn_int.h
build/fuzz/fuzz_response: upstream/proxy.c
build/fuzz/fuzz_admin: gateway/admin.c
build/fuzz/fuzz_revocation: policy/mirror.c

.PHONY: fuzz
fuzz: $(addprefix build/fuzz/,$(FUZZ_TARGETS))

build/fuzz/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

.SECONDEXPANSION:
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(HDRS) $(FUZZ_CORE_OBJ) $(FUZZ_LLHTTP_OBJ) $$(FUZZ_EXTRA_fuzz_$$*)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< \
	    $(filter-out $(FUZZ_EXCLUDE_fuzz_$*),$(FUZZ_CORE_OBJ)) $(FUZZ_EXTRA_fuzz_$*) $(FUZZ_LLHTTP_OBJ) -o $@ $(LIBS)
