//! Fuzzes the hosts-file parser and editor: on any bytes, parsing is lossless and every promise
//! of the editor holds (one line of ours after setting, none after removal, byte-exact round
//! trip, foreign lines kept). `tests/corpus` is the seed corpus; `tests/corpus.rs` runs the same
//! checks over it in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hostess_agent::hosts::check_promises(data) {
        panic!("{broken}");
    }
});
