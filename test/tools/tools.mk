# Test helpers (included from the top-level Makefile).
# build/mint-jwt: makes signed JWTs and JWKS files for the integration tests.
build/mint-jwt: test/tools/mint-jwt.c
	@mkdir -p build
	$(CC) $(CFLAGS_BASE) $(OPT) $(CFLAGS) $< -o $@ -lcrypto -ljansson
