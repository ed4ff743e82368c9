# App Attest test tooling (included from the top-level Makefile).
#   build/mint-appattest     test/tools/mint-appattest.c: a test App Attest PKI and
#                            minted objects (OpenSSL, libcbor, jansson only)
#   build/asan/test_appattest  the generic build/asan/test_% rule, plus the header
build/mint-appattest: test/tools/mint-appattest.c test/tools/mint_appattest.h test/tools/mint_pem.c test/tools/mint_pem.h
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) test/tools/mint-appattest.c test/tools/mint_pem.c -o $@ -lcrypto -lcbor -ljansson

build/asan/test_appattest: test/tools/mint_appattest.h
