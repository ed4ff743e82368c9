# Certificate issuance: the token minting tool and the unit test's extra
# dependency (included from the top-level Makefile).
#   build/mint-integrity        test/tools/mint-integrity.c (OpenSSL + jansson only)
#   build/asan/test_issuance    built by the generic build/asan/test_% rule

build/mint-integrity: test/tools/mint-integrity.c test/tools/mint_integrity.h
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) test/tools/mint-integrity.c -o $@ -lcrypto -ljansson

build/asan/test_issuance: test/tools/mint_integrity.h
