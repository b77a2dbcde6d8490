#!/usr/bin/env bash
# Fuzzes predmon's decoder, join and line splitting with cargo-fuzz (libFuzzer) for a
# bounded time, starting from the committed corpus (fuzz/corpus/<target>). A finding
# fails the run; libFuzzer leaves the input in fuzz/artifacts/<target>/, to be fixed and
# kept under fuzz/regressions/<target>/ (tests/fuzz_corpus.rs replays those on stable).
#
#   bash scripts/fuzz.sh                  # 60 s in all (scripts/test.sh runs this)
#   FUZZ_SECONDS=3600 bash scripts/fuzz.sh   # longer, by hand: seconds per target
#   bash scripts/fuzz.sh decode           # one target
#   FUZZ_KEEP=1 FUZZ_CMIN=1 FUZZ_SECONDS=600 bash scripts/fuzz.sh   # grow, then minimize
#                                         # the committed corpus
#
# cargo-fuzz needs nightly compiler flags; on the stable toolchain they are enabled with
# RUSTC_BOOTSTRAP=1. AddressSanitizer is used when it links, else `-s none` (libFuzzer
# still finds panics, hangs and memory blow-ups).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode join stream)
per_target=${FUZZ_SECONDS:-$((60 / ${#targets[@]}))}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# A debug-assertions build, so that arithmetic overflow panics instead of wrapping.
build_flags=(--release --debug-assertions)
sanitizer=()
if ! cargo fuzz build "${build_flags[@]}" "${targets[0]}" >/tmp/predmon-fuzz-build.log 2>&1; then
    echo "cargo fuzz build with AddressSanitizer failed; retrying with -s none"
    tail -5 /tmp/predmon-fuzz-build.log
    sanitizer=(-s none)
    cargo fuzz build "${build_flags[@]}" "${sanitizer[@]}" "${targets[0]}"
fi

runs=()
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    echo "=== fuzz $t for ${per_target}s"
    # New inputs go to the first directory: a scratch one, so that a test run leaves the
    # committed corpus as it is; FUZZ_KEEP=1 grows the corpus itself.
    first="$scratch/$t"
    [ -n "${FUZZ_KEEP:-}" ] && first="fuzz/corpus/$t"
    mkdir -p "$first"
    # -rss_limit_mb: predmon must stay small on any input; -timeout: no input may hang it.
    log="fuzz/artifacts/$t/last-run.log"
    if ! cargo fuzz run "${build_flags[@]}" "${sanitizer[@]}" "$t" "$first" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$per_target" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: FAILED: $t found a failing input; see fuzz/artifacts/$t/"
        exit 1
    fi
    stats=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    runs+=("$t ${stats:-?} runs")
    if [ -n "${FUZZ_CMIN:-}" ]; then
        cargo fuzz cmin "${build_flags[@]}" "${sanitizer[@]}" "$t" "fuzz/corpus/$t" >/dev/null 2>&1
    fi
done

echo "fuzz: PASS: ${runs[*]} in ${per_target}s each, no crash, hang or memory blow-up"
