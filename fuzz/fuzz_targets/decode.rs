//! One line through the decoder, checked against serde_json's reading of it.
//! The body is shared with tests/fuzz_corpus.rs, which replays the corpus on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/fuzz_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::decode(data));
