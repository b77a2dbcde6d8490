//! A program of halves, complete events, junk, clock ticks and snapshot/restore, checked against a reference model of the join.
//! The body is shared with tests/fuzz_corpus.rs, which replays the corpus on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/fuzz_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::join(data));
