# Android key attestation: the chain minting tool (included from the
# top-level Makefile).
#   build/mint-keyattest        test/tools/mint-keyattest.c (OpenSSL only)
#   build/asan/test_keydesc     built by the generic build/asan/test_% rule

build/mint-keyattest: test/tools/mint-keyattest.c test/tools/mint_keyattest.h test/tools/mint_pem.c test/tools/mint_pem.h
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) test/tools/mint-keyattest.c test/tools/mint_pem.c -o $@ -lcrypto

build/asan/test_keydesc: test/tools/mint_keyattest.h
