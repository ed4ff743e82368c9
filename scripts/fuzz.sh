#!/usr/bin/env bash
# Builds the libFuzzer targets (make fuzz) and runs each one over its seeds
# and then for a while (docs/hacking.md).
#   scripts/fuzz.sh                      every target, $FUZZ_SECONDS (5) s each, as `make test`
#   scripts/fuzz.sh --time 3600 request  one target for an hour
#   FUZZ_SECONDS=0 scripts/fuzz.sh       only run the seeds
# Seeds: fuzz/corpus/<name>/ (and FUZZ_EXTRA_<name> below); dictionary:
# fuzz/<name>.dict when present. With --time, new inputs are kept in
# build/fuzz/corpus/<name>/ across runs; without it they go to a scratch
# directory. Crashes, leaks and timeouts land in build/fuzz/artifacts/<name>/.
# Ends with one line: "N passed, N failed" (one pass per target that ran clean).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-5} keep=0
if [ "${1:-}" = "--time" ]; then
    secs=$2 keep=1
    shift 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Each target builds on its own: one that does not compile fails alone.
if ! make -s -k -j"$(nproc 2>/dev/null || echo 2)" "${targets[@]/#/build/fuzz/fuzz_}" \
        >"$scratch/build.log" 2>&1; then
    echo "some fuzz targets failed to build:"
    grep -E 'error|undefined reference' "$scratch/build.log" | head -n 30
fi

# More seed directories, used in place (read, never written).
FUZZ_EXTRA_config=test/unit/config_cases
# Inputs larger than the 4 KiB default.
FUZZ_MAXLEN_jwt=16384 FUZZ_MAXLEN_play=16384 FUZZ_MAXLEN_jwks=8192 FUZZ_MAXLEN_issuance=12288

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0 failed=0
for t in "${targets[@]}"; do
    bin=build/fuzz/fuzz_$t
    if [ ! -f "fuzz/fuzz_$t.c" ]; then
        echo "FAIL $t: no such target (fuzz/fuzz_$t.c)"
        failed=$((failed + 1))
        continue
    fi
    if [ ! -x "$bin" ] || ! make -s -q "$bin" 2>/dev/null; then
        echo "FAIL $t: does not build (make $bin)"
        failed=$((failed + 1))
        continue
    fi
    out=$scratch/$t
    [ "$keep" -eq 1 ] && out=build/fuzz/corpus/$t
    art=build/fuzz/artifacts/$t
    mkdir -p "$out" "$art"
    limit=(-max_total_time="$secs")
    [ "$secs" -eq 0 ] && limit=(-runs=0)   # libFuzzer reads 0 s as "no limit"
    args=("${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$art/")
    [ -f "fuzz/$t.dict" ] && args+=(-dict="fuzz/$t.dict")
    ml=FUZZ_MAXLEN_$t
    [ -n "${!ml:-}" ] && args+=(-max_len="${!ml}")
    dirs=("$out")
    [ -d "fuzz/corpus/$t" ] && dirs+=("fuzz/corpus/$t")
    ex=FUZZ_EXTRA_$t
    [ -n "${!ex:-}" ] && [ -d "${!ex}" ] && dirs+=("${!ex}")
    "$bin" "${args[@]}" "${dirs[@]}" </dev/null >"$scratch/$t.log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/$t.log" | tail -n 1)
    execs=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$done_line")
    if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
        echo "PASS $t (${secs}s, ${execs:-?} exec/s, $(sed -nE 's/.*(cov: [0-9]+).*/\1/p' <<<"$done_line"))"
        passed=$((passed + 1))
    else
        echo "FAIL $t (exit $rc); the input is in $art/, the log follows:"
        grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$scratch/$t.log" | tail -n 60
        failed=$((failed + 1))
    fi
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
