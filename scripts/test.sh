#!/usr/bin/env bash
# predmon's whole test suite, runnable on a fresh machine: installs what the tests
# need (Debian's prometheus for promtool and the server, chromium for the page test,
# a Python venv with scikit-learn and the tansu Kafka broker), then runs lint, unit,
# integration, real-broker, real-Prometheus and browser tests.
#
#   bash scripts/test.sh            # everything
#   QUICK=1 bash scripts/test.sh    # cargo tests only (no installs, no e2e)
#
# Under CI=true a missing dependency fails the run instead of skipping a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Incremental state is for edit-compile loops; no stage here reads it again (it was
# 130 MB of a fresh run's 4.0 GB).
export CARGO_INCREMENTAL=0

# Free space, said first: a fresh run writes about 4 GB into the checkout (release and
# fuzz builds 1.4 and 1.3 GB, clippy's 0.5 GB, the venv 0.6 GB) besides cargo-fuzz and
# test data, and a CI run once failed at every stage with "No space left on
# device" on a machine that had less.
NEED_GIB=6
free_space() {
    df -Pk . "${TMPDIR:-/tmp}" | awk -v need="$NEED_GIB" 'NR > 1 && !seen[$6]++ {
        printf "disk: %s has %.1f GiB free%s\n", $6, $4 / 1048576,
            ($4 < need * 1048576 ? " (a fresh run needs about " need " GiB: expect \"No space left on device\")" : "") }'
}
free_space

passed=0
failed=0
failures=()
stage() {
    local name=$1
    shift
    echo
    echo "=== $name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "--- ok: $name ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "--- FAILED: $name ($((SECONDS - start)) s)"
        free_space
    fi
}

if [ -z "${QUICK:-}" ]; then
    # shellcheck source=scripts/test-env.sh
    . scripts/test-env.sh
    apt_install prometheus chromium curl
    # The image may ship Node.js from elsewhere with its own npm, which Debian's npm
    # package conflicts with: install them only where they are missing.
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
fi

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --all-targets --locked -- -D warnings
stage "cargo build --release" cargo build --release --locked
stage "cargo test" cargo test --release --locked

if [ -z "${QUICK:-}" ]; then
    for extra in scripts/check-deploy.sh scripts/e2e-prometheus.sh scripts/e2e-browser.sh scripts/reliability.sh scripts/fuzz.sh; do
        [ -f "$extra" ] && stage "$extra" bash "$extra"
    done
fi

echo
if [ "$failed" -gt 0 ]; then
    printf 'failed stage: %s\n' "${failures[@]}"
fi
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
