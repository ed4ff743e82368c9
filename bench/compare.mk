# compare.mk: `make compare` runs the side-by-side benchmark of portcullis,
# nginx and HAProxy (bench/compare, docs/benchmarks.md). Included from the
# top-level Makefile. QUICK=1 for short runs, WORKERS=N workers per server.
QUICK   ?=
WORKERS ?=

.PHONY: compare
compare:
	QUICK="$(QUICK)" WORKERS="$(WORKERS)" bench/compare
