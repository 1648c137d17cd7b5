#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    proxy_core::fuzzing::h2_upstream_frames(data);
});
