//! Feeds arbitrary bytes to the frame decoder as a received frame; the
//! property itself is `mg_wire::fuzzing::exercise`, which the robustness
//! tests run on every `cargo test` too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mg_wire::fuzzing::exercise(data);
});
