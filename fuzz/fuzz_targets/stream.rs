//! Raw bytes through the line splitter and the pipeline: the same lines however they arrive, each counted once.
//! The body is shared with tests/fuzz_corpus.rs, which replays the corpus on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/fuzz_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::stream(data));
