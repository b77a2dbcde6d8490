#!/usr/bin/env bash
# The huge nasty inputs (a 100 MB line, 1,000,000 distinct classes, models and ids that
# never join) through a release build of `predmon report` and `predmon run`: exact
# counts and peak RSS. The committed corpus of smaller nasty lines runs in `cargo test`
# (tests/nasty.rs); this is what is too big to commit. See docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
cargo build --release --locked --bin predmon
python3 scripts/reliability.py
