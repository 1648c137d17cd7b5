#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    proxy_xds::fuzzing::sotw_responses(data);
});
