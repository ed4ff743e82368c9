#!/usr/bin/env bash
# `make test`: installs what is missing, builds, and runs every test:
#   1. unit tests (built with ASan+UBSan),
#   2. the integration suite against build/portcullis,
#   3. the integration suite again against the ASan+UBSan build,
#   4. the bench tool's end-to-end test against the gateway,
#   5. the Dockerfile replayed without a container engine (test/test_dockerfile.py),
# and, after the unit tests, every fuzz target briefly (scripts/fuzz.sh).
# The integration harness starts its own redis-server, test upstreams and
# gateways on free loopback ports, with a PKI generated at test time.
# Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
unit_only=0
[ "${1:-}" = "--unit-only" ] && unit_only=1

scripts/deps.sh || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)
if ! make -s -j"$jobs" all asan; then
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0 failed=0 skipped=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# Runs one suite, echoes its output, adds its closing counts to the totals.
suite() {
    local name=$1; shift
    echo "== $name"
    "$@" 2>&1 | tee "$log/out"
    local rc=${PIPESTATUS[0]}
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log/out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$name: exited $rc without a result line"
        failed=$((failed + 1))
        return
    fi
    local p f s
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$name: exited $rc"
        failed=$((failed + 1))
    fi
}

for t in build/asan/test_*; do
    [ -x "$t" ] && suite "unit: $(basename "$t")" "$t"
done
# every libFuzzer target over its seeds, then a few seconds of fuzzing each
suite "fuzz" env FUZZ_SECONDS="${FUZZ_SECONDS:-5}" scripts/fuzz.sh
if [ "$unit_only" -eq 0 ]; then
    suite "integration" env PORTCULLIS_BIN=build/portcullis test/run-integration.sh
    suite "integration (ASan+UBSan)" env PORTCULLIS_BIN=build/asan/portcullis \
        PORTCULLIS_TEST_SANITIZED=1 test/run-integration.sh
    suite "bench tool integration" env PORTCULLIS_BIN=build/portcullis \
        PORTCULLIS_BENCH_BIN=build/portcullis-bench /usr/bin/python3 bench/test_bench_integration.py
    suite "Dockerfile replay" /usr/bin/python3 test/test_dockerfile.py
fi
echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
