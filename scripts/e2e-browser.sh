#!/usr/bin/env bash
# The status page (GET /) in a real browser against a real daemon: predmon runs the
# built-in generate source (one model collapsed onto its majority class), Debian's
# chromium renders the page, tests/browser/page.test.mjs asserts on what a person sees.
#   PREDMON_SCREENSHOT=docs/img/page.png bash scripts/e2e-browser.sh   # refresh the README's picture
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "e2e-browser: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node is missing (apt-get install nodejs)"
[ -x /usr/bin/chromium ] || fail "chromium is missing (apt-get install chromium)"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm install --prefix tests/browser --no-audit --no-fund --silent || fail "npm install of playwright-core failed"
fi
[ -x target/release/predmon ] || cargo build --release --locked

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/predmon.toml" <<TOML
[[sources]]
type = "generate"
rate = 400.0
label_delay = "1s"
[metrics]
windows = ["10s", "1m", "5m", "all"]
TOML
target/release/predmon run --config "$dir/predmon.toml" --web.listen-address "127.0.0.1:$port" >"$dir/predmon.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT

# Enough samples for every alert's minimum (min_samples = 100 in the 1m window).
for _ in $(seq 1 150); do
    n=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^predmon_window_samples\{model="fraud-v3",window="1m"\}/ {print int($2)}')
    [ "${n:-0}" -ge 150 ] && break
    sleep 0.2
done
[ "${n:-0}" -ge 150 ] || { cat "$dir/predmon.log"; fail "the daemon did not count 150 samples in 30 s"; }

PREDMON_URL="http://127.0.0.1:$port" node tests/browser/page.test.mjs
